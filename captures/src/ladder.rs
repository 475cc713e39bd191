//! Ladder diagrams in plain text, the way the RFCs and drafts draw message
//! flows: one column per node, one arrow per message, for a mailing-list
//! post or a slide. The input is the ladder as pmiplab writes it, one row a
//! line, each with an optional time `<t>ms` first:
//!
//! - a message: `<from> -> <to> <KIND> <fields>[ (dropped)]`;
//! - a data-plane event: `<from> => <to> <label>: <text>` (a flow's first
//!   packet on an interface, a flow switching interface);
//! - a note of the step that set things off: `* [<node>:] <text>`.
//!
//! Any other line is kept as text. The drawing is at most
//! [`Options::width`] columns wide: fields that do not fit beside the
//! arrows wrap onto lines of their own.

/// How a ladder is drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Nodes in the order their columns go, left to right; nodes the rows
    /// name and this list does not follow in the order they first appear.
    pub columns: Vec<String>,
    /// The widest a line of the ASCII drawing may be (72: a draft's page).
    pub width: usize,
    /// Shortens what the rows say: an NAI loses its realm (`mn=mn1`).
    pub abbreviate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { columns: Vec::new(), width: 72, abbreviate: false }
    }
}

/// What one ladder line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row<'a> {
    /// A signalling message (`data: false`) or a data-plane event (`data:
    /// true`) from one node to another.
    Arrow(Arrow<'a>),
    /// A note of the step that set what follows off, at a node's column
    /// when it names one.
    Note { time: Option<&'a str>, node: Option<&'a str>, text: &'a str },
    /// Anything else, kept as it is.
    Text(&'a str),
}

/// A message or a data-plane event between two nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow<'a> {
    pub time: Option<&'a str>,
    pub from: &'a str,
    pub to: &'a str,
    /// What the arrow is labelled with: the message kind, or the flow.
    pub kind: &'a str,
    pub fields: &'a str,
    /// The message never reached its receiver.
    pub dropped: bool,
    /// A data-plane event rather than signalling.
    pub data: bool,
}

/// A ladder line's parts: its time (`<t>ms`) if it has one, the rest, and
/// whether the run dropped the message (` (dropped)` at the end).
pub fn split_line(line: &str) -> (Option<&str>, &str, bool) {
    let (time, rest) = match line.split_once(' ') {
        Some((t, rest)) if t.len() > 2 && t.ends_with("ms") && t[..t.len() - 2].bytes().all(|b| b.is_ascii_digit()) => {
            (Some(t), rest)
        }
        _ => (None, line),
    };
    match rest.strip_suffix(" (dropped)") {
        Some(r) => (time, r, true),
        None => (time, rest, false),
    }
}

/// Reads one ladder line.
pub fn parse(line: &str) -> Row<'_> {
    let (time, rest, dropped) = split_line(line);
    if let Some(note) = rest.strip_prefix("* ") {
        let (node, text) = match note.split_once(": ") {
            Some((n, t)) if !n.is_empty() && !n.contains(' ') => (Some(n), t),
            _ => (None, note),
        };
        return Row::Note { time, node, text };
    }
    let mut words = rest.splitn(4, ' ');
    let (Some(from), Some(arrow), Some(to), Some(tail)) = (words.next(), words.next(), words.next(), words.next())
    else {
        return Row::Text(line);
    };
    let data = match arrow {
        "->" => false,
        "=>" => true,
        _ => return Row::Text(line),
    };
    if from.is_empty() || to.is_empty() || tail.is_empty() {
        return Row::Text(line);
    }
    let (kind, fields) = tail.split_once(' ').unwrap_or((tail, ""));
    let kind = if data { kind.strip_suffix(':').unwrap_or(kind) } else { kind };
    Row::Arrow(Arrow { time, from, to, kind, fields, dropped, data })
}

/// The columns of a ladder: the nodes its rows name, those `order` lists
/// first in that order, then the others as they first appear.
pub fn columns<'a>(rows: &[Row<'a>], order: &[String]) -> Vec<&'a str> {
    let mut seen: Vec<&'a str> = Vec::new();
    let mut add = |n: &'a str| {
        if !seen.contains(&n) {
            seen.push(n);
        }
    };
    for r in rows {
        match r {
            Row::Arrow(a) => {
                add(a.from);
                add(a.to);
            }
            Row::Note { node: Some(n), .. } if order.iter().any(|o| o == n) => add(n),
            _ => {}
        }
    }
    let mut out: Vec<&'a str> = Vec::new();
    for o in order {
        if let Some(n) = seen.iter().find(|n| **n == o.as_str()) {
            out.push(n);
        }
    }
    for n in seen {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// `text` with what [`Options::abbreviate`] shortens shortened.
pub fn abbreviated(text: &str, opts: &Options) -> String {
    if !opts.abbreviate {
        return text.to_string();
    }
    text.split(' ')
        .map(|w| match w.strip_prefix("mn=").and_then(|nai| nai.split_once('@')) {
            Some((user, _)) => format!("mn={user}"),
            None => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Breaks `text` into lines of at most `width` characters, at spaces
/// where it can and inside a word that is longer than a line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let gap = usize::from(used > 0);
            if used + gap + word.len() <= width {
                if gap == 1 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 0 {
                out.push(std::mem::take(&mut line));
                continue;
            }
            let rest = word.split_off(width);
            out.push(word.into_iter().collect());
            word = rest;
        }
    }
    if !line.is_empty() {
        out.push(line);
    }
    out
}

/// Renders `lines` with the default [`Options`].
pub fn render(lines: &[String]) -> String {
    render_with(lines, &Options::default())
}

/// The least room kept beside the arrows for a row's fields; with less,
/// the fields go on lines of their own under the arrow.
const MIN_BESIDE: usize = 24;

/// The geometry of one drawing.
struct Grid<'a> {
    nodes: Vec<&'a str>,
    time_w: usize,
    col_w: usize,
    width: usize,
}

impl Grid<'_> {
    fn centre(&self, k: usize) -> usize {
        self.time_w + self.col_w * k + self.col_w / 2
    }

    /// Characters the columns take, up to and with the last lifeline.
    fn diagram_w(&self) -> usize {
        match self.nodes.len() {
            0 => self.time_w,
            n => self.centre(n - 1) + 1,
        }
    }

    fn lifelines(&self) -> Vec<char> {
        let mut row = vec![' '; self.diagram_w()];
        for k in 0..self.nodes.len() {
            row[self.centre(k)] = '|';
        }
        row
    }

    fn column(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| *n == node)
    }
}

fn put(row: &mut Vec<char>, at: usize, text: &str) {
    for (i, c) in text.chars().enumerate() {
        if at + i >= row.len() {
            row.resize(at + i + 1, ' ');
        }
        row[at + i] = c;
    }
}

fn line_of(row: Vec<char>) -> String {
    row.into_iter().collect::<String>().trim_end().to_string()
}

/// Renders `lines` as a ladder diagram drawn as `opts` says.
pub fn render_with(lines: &[String], opts: &Options) -> String {
    let rows: Vec<Row> = lines.iter().map(|l| parse(l)).collect();
    let nodes = columns(&rows, &opts.columns);
    let width = opts.width.max(24);
    let time_w = rows
        .iter()
        .filter_map(|r| match r {
            Row::Arrow(Arrow { time, .. }) | Row::Note { time, .. } => time.map(str::len),
            Row::Text(_) => None,
        })
        .max()
        .unwrap_or(0)
        + 1;
    let label_w = rows.iter().filter_map(|r| if let Row::Arrow(a) = r { Some(a.kind.len()) } else { None }).max();
    // Room for `|- KIND ->|` and for each node's name; narrower when the
    // columns would not fit the width (labels and names are then cut),
    // never narrower than an arrow `|->|`.
    let want = (label_w.unwrap_or(3) + 6).max(nodes.iter().map(|n| n.chars().count() + 2).max().unwrap_or(0)).max(9);
    let fit = width.saturating_sub(time_w + 1) / nodes.len().max(1);
    let col_w = want.min(fit).max(4);
    let g = Grid { nodes, time_w, col_w, width };
    let mut out = Vec::new();

    let mut names = vec![' '; g.diagram_w()];
    for (k, n) in g.nodes.iter().enumerate() {
        let name: String = if n.chars().count() >= col_w {
            n.chars().take(col_w.saturating_sub(2)).chain(['~']).collect()
        } else {
            n.to_string()
        };
        let start = (g.centre(k) + 1).saturating_sub(name.chars().count().div_ceil(2));
        put(&mut names, start, &name);
    }
    out.push(line_of(names));
    out.push(line_of(g.lifelines()));

    for (line, row) in lines.iter().zip(&rows) {
        match row {
            Row::Text(_) => {
                for l in wrap(&abbreviated(line, opts), g.width.saturating_sub(g.time_w)) {
                    out.push(format!("{:w$}{l}", "", w = g.time_w));
                }
            }
            Row::Note { time, node, text } => {
                let mut row = g.lifelines();
                put(&mut row, g.time_w - 1 - time.map_or(0, str::len), time.unwrap_or(""));
                let at = node.and_then(|n| g.column(n));
                if let Some(k) = at {
                    row[g.centre(k)] = '*';
                }
                let who = match (node, at) {
                    (Some(n), None) => format!("{n}: "),
                    _ => String::new(),
                };
                let said = match node.filter(|_| at.is_some()) {
                    Some(n) => format!("({n} {text})"),
                    None => format!("({who}{text})"),
                };
                out.extend(beside(&g, row, &abbreviated(&said, opts)));
            }
            Row::Arrow(a) => {
                let mut row = g.lifelines();
                put(&mut row, g.time_w - 1 - a.time.map_or(0, str::len), a.time.unwrap_or(""));
                let (Some(f), Some(t)) = (g.column(a.from), g.column(a.to)) else { continue };
                if f != t {
                    let (lo, hi) = (g.centre(f.min(t)) + 1, g.centre(f.max(t)) - 1);
                    let shaft = if a.data { '=' } else { '-' };
                    for cell in &mut row[lo..=hi] {
                        *cell = shaft;
                    }
                    let head = if f < t { hi } else { lo };
                    row[head] = match (a.dropped, f < t) {
                        (true, _) => 'X',
                        (false, true) => '>',
                        (false, false) => '<',
                    };
                    // Centred on the shaft between tail and head.
                    let label = format!(" {} ", a.kind);
                    let first = if f < t { lo } else { lo + 1 };
                    let start = first + (hi - lo).saturating_sub(label.len()) / 2;
                    for (i, c) in label.chars().enumerate() {
                        if start + i < hi && start + i > lo {
                            row[start + i] = c;
                        }
                    }
                }
                let mut fields = a.fields.to_string();
                if a.dropped {
                    fields.push_str(" (dropped)");
                }
                out.extend(beside(&g, row, &abbreviated(fields.trim(), opts)));
            }
        }
    }
    out.join("\n") + "\n"
}

/// `row` with `text` beside it, wrapped to the width: on the row and the
/// lifelines under it when there is room beside the columns, else on
/// lines of their own under the row, indented past the time.
fn beside(g: &Grid, row: Vec<char>, text: &str) -> Vec<String> {
    let start = g.diagram_w() + 2;
    let room = g.width.saturating_sub(start);
    if text.is_empty() {
        return vec![line_of(row)];
    }
    if room >= MIN_BESIDE || (room > 0 && text.chars().count() <= room) {
        let mut out = Vec::new();
        let mut row = Some(row);
        for part in wrap(text, room) {
            let mut r = row.take().unwrap_or_else(|| g.lifelines());
            put(&mut r, start, &part);
            out.push(line_of(r));
        }
        return out;
    }
    let mut out = vec![line_of(row)];
    let indent = g.time_w + 2;
    for part in wrap(text, g.width.saturating_sub(indent)) {
        let mut r = vec![' '; indent];
        put(&mut r, indent, &part);
        out.push(line_of(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn a_lost_fma_and_its_repeat_drawn_in_the_order_asked_for() {
        let got = render_with(
            &lines(&[
                "0ms mag1 -> lma PBU seq=1 hi=1",
                "1ms lma -> mag1 PBA seq=1 status=0",
                "6ms * lma: moves flow Y to mag1",
                "6ms lma -> mag1 FMI seq=1 op=add lifetime=300s",
                "7ms mag1 -> lma FMA seq=1 status=0 (dropped)",
                "1006ms lma -> mag1 FMI seq=1 op=add lifetime=300s",
                "1008ms lma -> mag2 FMI seq=2 op=del",
                "1010ms mag1 => mn1 Y: now on mn1/if1, was mn1/if2",
            ]),
            &Options { columns: vec!["lma".into(), "mag1".into(), "mag2".into()], ..Options::default() },
        );
        let want = r"
          lma      mag1     mag2     mn1
           |        |        |        |
   0ms     |<- PBU -|        |        |  seq=1 hi=1
   1ms     |- PBA ->|        |        |  seq=1 status=0
   6ms     *        |        |        |  (lma moves flow Y to mag1)
   6ms     |- FMI ->|        |        |  seq=1 op=add lifetime=300s
   7ms     |X- FMA -|        |        |  seq=1 status=0 (dropped)
1006ms     |- FMI ->|        |        |  seq=1 op=add lifetime=300s
1008ms     |----- FMI ------>|        |  seq=2 op=del
1010ms     |        |====== Y =======>|  now on mn1/if1, was mn1/if2
";
        assert_eq!(got, want.strip_prefix('\n').unwrap_or(want), "\n{got}");
    }

    #[test]
    fn no_line_is_wider_than_asked_however_long_the_fields() {
        let long = "0ms mag1 -> lma PBU seq=1 lifetime=400s mn=mn1@pmip.lab hnp=2001:db8:1::/64 hi=1 att=4 \
                    and-a-word-longer-than-any-line-could-ever-hold-in-seventy-two-columns-at-all";
        for nodes in 2..9 {
            let mut v = vec![long.to_string()];
            for k in 0..nodes {
                v.push(format!("12345ms mag{k} -> lma-with-a-long-name FMI seq={k} op=add"));
            }
            v.push("99ms * lma: a note that goes on and on about what the step did and why it matters".into());
            v.push("-- a line that is not a row, and longer than seventy-two columns of text --".into());
            let got = render(&v);
            for l in got.lines() {
                assert!(l.chars().count() <= 72, "{} columns:\n{l}\n{got}", l.chars().count());
            }
            assert!(got.contains("and-a-word"), "{got}");
        }
    }

    #[test]
    fn abbreviating_drops_the_realm_of_an_nai() {
        let opts = Options { abbreviate: true, ..Options::default() };
        let got = render_with(&lines(&["mag1 -> lma PBU seq=1 mn=mn1@pmip.lab"]), &opts);
        assert!(got.contains("seq=1 mn=mn1\n"), "{got}");
    }

    #[test]
    fn rows_of_each_kind_are_read_as_such() {
        assert!(matches!(parse("5ms * lma: decides"), Row::Note { time: Some("5ms"), node: Some("lma"), .. }));
        assert!(matches!(parse("* two words: x"), Row::Note { node: None, text: "two words: x", .. }));
        let Row::Arrow(a) = parse("9ms mag1 => mn1 Y: first packet on mn1/if1") else { panic!("not an arrow") };
        assert!(a.data && a.kind == "Y" && a.fields == "first packet on mn1/if1");
        assert_eq!(parse("a => b"), Row::Text("a => b"));
    }

    #[test]
    fn lines_without_times_and_lines_that_are_not_messages() {
        let got = render(&lines(&["lma -> mag1 BRI seq=7", "-- the lab was restarted --"]));
        assert!(got.contains("|- BRI ->|  seq=7"), "{got}");
        assert!(got.ends_with(" -- the lab was restarted --\n"), "{got}");
        assert_eq!(render(&[]), "\n\n");
    }

    #[test]
    fn nothing_a_ladder_line_holds_makes_it_panic() {
        for l in [
            "",
            "->",
            "a -> b",
            "a -> b ",
            "1ms",
            "ms a -> b X",
            "a -> a SELF x",
            "é -> ü PBU ß (dropped)",
            "* ",
            "*",
            "1ms * : x",
            "a => a Y: z",
            "18446744073709551615ms a -> b PBU x y z",
            "18446744073709551615ms * a: b",
        ] {
            let _ = render(&lines(&[l, "x -> y PBU"]));
            let _ = render_with(&lines(&[l]), &Options { width: 0, abbreviate: true, ..Options::default() });
        }
    }
}
