//! `pmiplab graph`: a scenario's topology — the links the harness builds
//! for it (LMA to each MAG and CN, each MAG to the MN interfaces on its
//! access links) — as Graphviz DOT, a small SVG drawn here, or ASCII.

use std::fmt::Write;

use crate::scenario::{Role, Scenario};

/// One link of the lab: its two ends and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub a: String,
    pub b: String,
    pub label: String,
}

/// A node of the drawing: a scenario node, or an MN interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vertex {
    pub name: String,
    pub role: &'static str,
    /// Column in the drawing, left to right: CN, LMA, MAG, MN interface.
    pub column: usize,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Lma => "lma",
        Role::Mag => "mag",
        Role::Mn => "mn",
        Role::Cn => "cn",
    }
}

/// The lab's vertices and links, in the order the drafts draw them:
/// CNs, the LMA, the MAGs, the MN interfaces.
pub fn topology(s: &Scenario) -> (Vec<Vertex>, Vec<Edge>) {
    let mut vertices = Vec::new();
    let mut edges = Vec::new();
    let column = |r: Role| match r {
        Role::Cn => 0,
        Role::Lma => 1,
        Role::Mag => 2,
        Role::Mn => 3,
    };
    for (name, n) in &s.nodes {
        if n.value.role == Role::Mn {
            for i in &n.value.interfaces {
                vertices.push(Vertex { name: format!("{name}/{i}"), role: "mn", column: 3 });
            }
        } else {
            vertices.push(Vertex { name: name.clone(), role: role_name(n.value.role), column: column(n.value.role) });
        }
    }
    vertices.sort_by(|a, b| (a.column, &a.name).cmp(&(b.column, &b.name)));
    let lma = s.nodes.iter().find(|(_, n)| n.value.role == Role::Lma).map(|(k, _)| k.clone());
    if let Some(lma) = &lma {
        for v in vertices.iter().filter(|v| v.role == "cn") {
            edges.push(Edge { a: v.name.clone(), b: lma.clone(), label: format!("{lma}:to-{}", v.name) });
        }
        for v in vertices.iter().filter(|v| v.role == "mag") {
            edges.push(Edge { a: lma.clone(), b: v.name.clone(), label: format!("{lma}:to-{}", v.name) });
        }
    }
    for l in &s.links {
        let l = &l.value;
        edges.push(Edge { a: l.mag.value.clone(), b: l.mn.value.clone(), label: l.att.value.clone() });
    }
    (vertices, edges)
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz DOT (`dot -Tsvg` draws it).
pub fn dot(s: &Scenario) -> String {
    let (vertices, edges) = topology(s);
    let mut out = format!("graph {} {{\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n", dot_id(&s.id));
    for col in 0..4 {
        let names: Vec<String> = vertices.iter().filter(|v| v.column == col).map(|v| dot_id(&v.name)).collect();
        if !names.is_empty() {
            let _ = writeln!(out, "  {{ rank=same; {} }}", names.join("; "));
        }
    }
    for v in &vertices {
        let _ = writeln!(out, "  {} [label={}];", dot_id(&v.name), dot_id(&format!("{}\n({})", v.name, v.role)));
    }
    for e in &edges {
        let _ = writeln!(out, "  {} -- {} [label={}];", dot_id(&e.a), dot_id(&e.b), dot_id(&e.label));
    }
    out + "}\n"
}

/// One line per link, left to right.
pub fn ascii(s: &Scenario) -> String {
    let (vertices, edges) = topology(s);
    let width = vertices.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut out = format!("{} — {}\n", s.id, s.title);
    for col in 0..4 {
        let names: Vec<&str> = vertices.iter().filter(|v| v.column == col).map(|v| v.name.as_str()).collect();
        if !names.is_empty() {
            let _ = writeln!(out, "  {:<4} {}", ["cn", "lma", "mag", "mn"][col], names.join(", "));
        }
    }
    for e in &edges {
        let _ = writeln!(out, "  {:>width$} ─── {:<width$}  {}", e.a, e.b, e.label);
    }
    out
}

fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A standalone SVG: a column per role, a box per vertex, a line per link.
pub fn svg(s: &Scenario) -> String {
    let (vertices, edges) = topology(s);
    const COL_W: usize = 170;
    const ROW_H: usize = 60;
    const BOX_W: usize = 120;
    const BOX_H: usize = 32;
    let mut rows = [0usize; 4];
    let mut at = std::collections::BTreeMap::new();
    for v in &vertices {
        let x = 20 + v.column * COL_W;
        let y = 50 + rows[v.column] * ROW_H;
        rows[v.column] += 1;
        at.insert(v.name.clone(), (x, y));
    }
    let height = 50 + rows.iter().max().copied().unwrap_or(1) * ROW_H + 10;
    let width = 20 + 4 * COL_W;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"12\">\n<title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"20\" y=\"24\" font-size=\"14\">{}</text>\n",
        xml(&s.id),
        xml(&format!("{} — {}", s.id, s.title))
    );
    for e in &edges {
        let (Some(&(ax, ay)), Some(&(bx, by))) = (at.get(&e.a), at.get(&e.b)) else { continue };
        let (x1, y1, x2, y2) = (ax + BOX_W, ay + BOX_H / 2, bx, by + BOX_H / 2);
        let _ = writeln!(
            out,
            "<line class=\"link\" x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#555\"/>\n<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#555\">{}</text>",
            (x1 + x2) / 2 - 20,
            (y1 + y2) / 2 - 4,
            xml(&e.label)
        );
    }
    for v in &vertices {
        let (x, y) = at[&v.name];
        let fill = match v.role {
            "lma" => "#dbe8ff",
            "mag" => "#e2f5e2",
            "mn" => "#fff2cc",
            _ => "#eeeeee",
        };
        let _ = writeln!(
            out,
            "<g class=\"node\" id=\"{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"4\" fill=\"{fill}\" stroke=\"#333\"/><text x=\"{}\" y=\"{}\">{}</text></g>",
            xml(&v.name),
            x + 8,
            y + 20,
            xml(&v.name)
        );
    }
    out + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = "id: G\ntitle: g\nnodes:\n  lma: { role: lma }\n  mag1: { role: mag }\n  mag2: { role: mag }\n  mn1: { role: mn, interfaces: [if1, if2], prefixes: [\"2001:db8:1::/64\"] }\n  cn: { role: cn }\nlinks:\n  - { mn: mn1/if1, mag: mag1, att: wifi }\n  - { mn: mn1/if2, mag: mag2, att: e-utran }\nsteps: []\n";

    #[test]
    fn the_topology_has_every_link_the_harness_builds() {
        let s = crate::scenario::parse(std::path::Path::new("g.yaml"), LAB).unwrap();
        let (v, e) = topology(&s);
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["cn", "lma", "mag1", "mag2", "mn1/if1", "mn1/if2"]);
        let pairs: Vec<(&str, &str)> = e.iter().map(|e| (e.a.as_str(), e.b.as_str())).collect();
        assert_eq!(pairs, [("cn", "lma"), ("lma", "mag1"), ("lma", "mag2"), ("mag1", "mn1/if1"), ("mag2", "mn1/if2")]);
        let d = dot(&s);
        assert!(d.starts_with("graph \"G\" {") && d.contains("\"mag2\" -- \"mn1/if2\" [label=\"e-utran\"];"), "{d}");
        let a = ascii(&s);
        assert!(a.contains("mag1 ─── mn1/if1  wifi"), "{a}");
        let svg = svg(&s);
        assert_eq!(svg.matches("<g class=\"node\"").count(), 6, "{svg}");
        assert_eq!(svg.matches("<line class=\"link\"").count(), 5, "{svg}");
    }
}
