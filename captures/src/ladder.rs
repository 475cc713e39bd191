//! Ladder diagrams in plain text, the way the RFCs draw message flows: one
//! column per node, one arrow per message, for a mailing-list post or a
//! slide. The input is the ladder as pmiplab writes it, one message a line:
//! `[<t>ms ]<from> -> <to> <KIND> <fields>[ (dropped)]`.

/// One message of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Arrow<'a> {
    time: Option<&'a str>,
    from: &'a str,
    to: &'a str,
    kind: &'a str,
    fields: &'a str,
    dropped: bool,
}

/// A ladder line's parts: its time (`<t>ms`) if it has one, the message,
/// and whether the run dropped it (` (dropped)` at the end).
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

fn parse(line: &str) -> Option<Arrow<'_>> {
    let (time, rest, dropped) = split_line(line);
    let mut words = rest.splitn(4, ' ');
    let (from, arrow, to, tail) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if arrow != "->" || from.is_empty() || to.is_empty() {
        return None;
    }
    let (kind, fields) = tail.split_once(' ').unwrap_or((tail, ""));
    Some(Arrow { time, from, to, kind, fields, dropped })
}

/// Renders `lines` as a ladder diagram; nodes get columns in the order they
/// first appear. A line that is not a message is kept as it is.
pub fn render(lines: &[String]) -> String {
    let arrows: Vec<Option<Arrow>> = lines.iter().map(|l| parse(l)).collect();
    let mut nodes: Vec<&str> = Vec::new();
    for a in arrows.iter().flatten() {
        for n in [a.from, a.to] {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
    }
    let longest = |f: &dyn Fn(&Arrow) -> usize| arrows.iter().flatten().map(f).max().unwrap_or(0);
    let time_w = longest(&|a| a.time.map_or(0, str::len)).max(1) + 1;
    let col_w = (longest(&|a| a.kind.len()) + 8).max(nodes.iter().map(|n| n.len() + 4).max().unwrap_or(0)).max(12);
    let centre = |k: usize| time_w + col_w * k + col_w / 2;
    let width = if nodes.is_empty() { time_w } else { centre(nodes.len() - 1) + 1 };
    let mut out = Vec::new();

    let mut names = vec![' '; width + col_w];
    for (k, n) in nodes.iter().enumerate() {
        let start = (centre(k) + 1).saturating_sub(n.chars().count().div_ceil(2));
        for (i, c) in n.chars().enumerate() {
            if let Some(cell) = names.get_mut(start + i) {
                *cell = c;
            }
        }
    }
    out.push(names.into_iter().collect::<String>().trim_end().to_string());
    let lifelines = || {
        let mut row = vec![' '; width];
        for k in 0..nodes.len() {
            row[centre(k)] = '|';
        }
        row
    };
    out.push(lifelines().into_iter().collect::<String>().trim_end().to_string());

    for (line, arrow) in lines.iter().zip(&arrows) {
        let Some(a) = arrow else {
            out.push(format!("{:time_w$}{line}", ""));
            continue;
        };
        let mut row = lifelines();
        for (i, c) in a.time.unwrap_or("").chars().enumerate() {
            row[time_w - 1 - a.time.map_or(0, str::len) + i] = c;
        }
        let (Some(f), Some(t)) = (nodes.iter().position(|n| *n == a.from), nodes.iter().position(|n| *n == a.to))
        else {
            continue;
        };
        if f != t {
            let (lo, hi) = (centre(f.min(t)) + 1, centre(f.max(t)) - 1);
            for cell in &mut row[lo..=hi] {
                *cell = '-';
            }
            let head = if f < t { hi } else { lo };
            row[head] = match (a.dropped, f < t) {
                (true, _) => 'X',
                (false, true) => '>',
                (false, false) => '<',
            };
            let label = format!(" {} ", a.kind);
            let start = lo + (hi + 1 - lo).saturating_sub(label.len()) / 2;
            for (i, c) in label.chars().enumerate() {
                if start + i < hi {
                    row[start + i] = c;
                }
            }
        }
        let mut text: String = row.into_iter().collect();
        if !a.fields.is_empty() {
            text.push_str("  ");
            text.push_str(a.fields);
        }
        if a.dropped {
            text.push_str(" (dropped)");
        }
        out.push(text.trim_end().to_string());
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn a_lost_fma_and_its_repeat_drawn_with_columns_in_order_of_appearance() {
        let got = render(&lines(&[
            "0ms mag1 -> lma PBU seq=1 hi=1",
            "1ms lma -> mag1 PBA seq=1 status=0",
            "6ms lma -> mag1 FMI seq=1 op=add",
            "7ms mag1 -> lma FMA seq=1 status=0 (dropped)",
            "1006ms lma -> mag1 FMI seq=1 op=add",
            "1008ms lma -> mag2 FMI seq=2 op=del",
        ]));
        let want = r"
            mag1        lma         mag2
             |           |           |
   0ms       |--- PBU -->|           |  seq=1 hi=1
   1ms       |<-- PBA ---|           |  seq=1 status=0
   6ms       |<-- FMI ---|           |  seq=1 op=add
   7ms       |--- FMA --X|           |  seq=1 status=0 (dropped)
1006ms       |<-- FMI ---|           |  seq=1 op=add
1008ms       |           |--- FMI -->|  seq=2 op=del
";
        assert_eq!(got, want.strip_prefix('\n').unwrap_or(want), "\n{got}");
    }

    #[test]
    fn lines_without_times_and_lines_that_are_not_messages() {
        let got = render(&lines(&["lma -> mag1 BRI seq=7", "-- the lab was restarted --"]));
        assert!(got.contains("|--- BRI -->|  seq=7"), "{got}");
        assert!(got.ends_with("  -- the lab was restarted --\n"), "{got}");
        assert_eq!(render(&[]), "\n\n");
    }

    #[test]
    fn nothing_a_ladder_line_holds_makes_it_panic() {
        for l in ["", "->", "a -> b", "a -> b ", "1ms", "ms a -> b X", "a -> a SELF x", "é -> ü PBU ß (dropped)"] {
            let _ = render(&lines(&[l, "x -> y PBU"]));
        }
    }
}
