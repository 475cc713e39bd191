//! The ladder as an SVG picture: the same rows and columns as the text
//! drawing ([`crate::ladder`]), for a browser or a slide. Self-contained
//! (no scripts, no outside fonts or files) so that it pastes anywhere.

use std::fmt::Write as _;

use crate::ladder::{abbreviated, columns, parse, Options, Row};

const COL_W: usize = 120;
const ROW_H: usize = 24;
const TIME_W: usize = 70;
const TOP: usize = 44;
const CHAR_W: usize = 7;

/// `text` made safe inside an SVG element or attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no place for other control characters.
            c if c.is_control() && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Renders `lines` (ladder lines, see [`crate::ladder`]) as an SVG
/// document, columns in the order `opts` gives.
pub fn render_svg(lines: &[String], opts: &Options) -> String {
    let rows: Vec<Row> = lines.iter().map(|l| parse(l)).collect();
    let nodes = columns(&rows, &opts.columns);
    let x = |k: usize| TIME_W + COL_W * k + COL_W / 2;
    let diagram_w = TIME_W + COL_W * nodes.len().max(1);
    let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let width = diagram_w + 16 + longest.min(120) * CHAR_W;
    let height = TOP + ROW_H * (rows.len() + 1);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">
<defs>
<marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f3b73"/></marker>
<marker id="datahead" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#2e7d32"/></marker>
</defs>
<rect class="background" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>
"##
    );
    let bottom = height - ROW_H / 2;
    for (k, n) in nodes.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text class="node" x="{cx}" y="20" text-anchor="middle" font-weight="bold">{name}</text>
<line class="lifeline" x1="{cx}" y1="28" x2="{cx}" y2="{bottom}" stroke="#888888" stroke-width="1"/>"##,
            cx = x(k),
            name = escape(n)
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + ROW_H * i + ROW_H / 2;
        let text_x = diagram_w + 16;
        match row {
            Row::Text(t) => {
                let _ = writeln!(
                    s,
                    r##"<text class="text" x="8" y="{ty}" fill="#555555">{t}</text>"##,
                    ty = y + 4,
                    t = escape(&abbreviated(t, opts))
                );
            }
            Row::Note { time, node, text } => {
                time_text(&mut s, *time, y);
                let at = node.and_then(|n| nodes.iter().position(|c| *c == n));
                let said = match (node, at) {
                    (Some(n), _) => format!("{n} {text}"),
                    (None, _) => text.to_string(),
                };
                if let Some(k) = at {
                    let _ = writeln!(
                        s,
                        r##"<circle class="note-mark" cx="{cx}" cy="{y}" r="4" fill="#b26a00"/>"##,
                        cx = x(k)
                    );
                }
                let _ = writeln!(
                    s,
                    r##"<text class="note" x="{text_x}" y="{ty}" fill="#b26a00" font-style="italic">({t})</text>"##,
                    ty = y + 4,
                    t = escape(&abbreviated(&said, opts))
                );
            }
            Row::Arrow(a) => {
                time_text(&mut s, a.time, y);
                let (Some(f), Some(t)) =
                    (nodes.iter().position(|n| *n == a.from), nodes.iter().position(|n| *n == a.to))
                else {
                    continue;
                };
                let (x1, x2) = (x(f), x(t));
                let class = match (a.data, a.dropped) {
                    (true, _) => "data",
                    (false, true) => "message dropped",
                    (false, false) => "message",
                };
                let (colour, dash, head) = match (a.data, a.dropped) {
                    (true, _) => ("#2e7d32", r#" stroke-dasharray="8 3""#, r#" marker-end="url(#datahead)""#),
                    (false, true) => ("#c62828", r#" stroke-dasharray="4 3""#, ""),
                    (false, false) => ("#1f3b73", "", r#" marker-end="url(#head)""#),
                };
                // A dropped message stops short of its receiver, with an X.
                let end = if a.dropped && x1 != x2 {
                    if x2 > x1 {
                        x2 - COL_W / 4
                    } else {
                        x2 + COL_W / 4
                    }
                } else {
                    x2
                };
                let width = if a.data { 3 } else { 2 };
                let _ = writeln!(
                    s,
                    r##"<line class="{class}" x1="{x1}" y1="{y}" x2="{end}" y2="{y}" stroke="{colour}" stroke-width="{width}"{dash}{head}/>"##
                );
                if a.dropped {
                    let _ = writeln!(
                        s,
                        r##"<path class="drop-mark" d="M{a},{b} L{c},{d} M{a},{d} L{c},{b}" stroke="#c62828" stroke-width="2"/>"##,
                        a = end - 5,
                        b = y - 5,
                        c = end + 5,
                        d = y + 5
                    );
                }
                // A white halo keeps the label readable where a lifeline
                // crosses it.
                let _ = writeln!(
                    s,
                    r##"<text class="label" x="{lx}" y="{ly}" text-anchor="middle" fill="{colour}" stroke="#ffffff" stroke-width="4" paint-order="stroke">{k}</text>"##,
                    lx = (x1 + x2) / 2,
                    ly = y - 4,
                    k = escape(a.kind)
                );
                let mut fields = a.fields.to_string();
                if a.dropped {
                    fields.push_str(" (dropped)");
                }
                if !fields.trim().is_empty() {
                    let _ = writeln!(
                        s,
                        r##"<text class="fields" x="{text_x}" y="{ty}" fill="#333333">{f}</text>"##,
                        ty = y + 4,
                        f = escape(&abbreviated(fields.trim(), opts))
                    );
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

fn time_text(s: &mut String, time: Option<&str>, y: usize) {
    if let Some(t) = time {
        let _ = writeln!(
            s,
            r##"<text class="time" x="{tx}" y="{ty}" text-anchor="end" fill="#555555">{t}</text>"##,
            tx = TIME_W - 8,
            ty = y + 4,
            t = escape(t)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svg(v: &[&str]) -> String {
        render_svg(&v.iter().map(|l| l.to_string()).collect::<Vec<_>>(), &Options::default())
    }

    #[test]
    fn one_element_per_row_and_a_dropped_message_marked() {
        let got = svg(&[
            "0ms mag1 -> lma PBU seq=1",
            "5ms * lma: moves flow Y",
            "7ms mag1 -> lma FMA seq=1 status=0 (dropped)",
            "9ms mag1 => mn1 Y: now on mn1/if1",
        ]);
        assert!(got.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{got}");
        assert_eq!(got.matches("<line class=\"lifeline\"").count(), 3, "{got}");
        assert_eq!(got.matches("<line class=\"message\"").count(), 1, "{got}");
        assert_eq!(got.matches("<line class=\"message dropped\"").count(), 1, "{got}");
        assert_eq!(got.matches("class=\"drop-mark\"").count(), 1, "{got}");
        assert_eq!(got.matches("<line class=\"data\"").count(), 1, "{got}");
        assert!(got.contains("(lma moves flow Y)"), "{got}");
        assert!(got.trim_end().ends_with("</svg>"), "{got}");
    }

    #[test]
    fn what_rows_say_cannot_break_the_markup() {
        let got = svg(&["0ms a<b -> c&d PB\"U x='<y>' \u{1}"]);
        assert!(got.contains("a&lt;b") && got.contains("c&amp;d") && got.contains("PB&quot;U"), "{got}");
        assert!(!got.contains('\u{1}'), "{got}");
    }
}
