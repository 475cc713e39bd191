//! The ladders the catalogue draws: what the FM-SP ladder shows of flow Y,
//! that every ASCII line fits a draft's 72 columns, and that the SVG form
//! opens and paints in a real browser (headless Chromium).
//!
//! Needs `chromium` (ci/test.sh installs it). Set PMIPLAB_SKIP_CHROMIUM=1
//! to skip the browser test on a machine without it; otherwise its
//! absence fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use pmip_captures::ladder::{self, Row};
use pmip_captures::ladder_svg::render_svg;
use pmiplab::report::ScenarioReport;
use pmiplab::run::run_virtual;
use pmiplab::scenario;

fn topologies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../topologies")
}

fn play(file: &str) -> ScenarioReport {
    let file = topologies().join(file);
    let s = scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    run_virtual(&file, &s)
}

#[test]
fn the_fm_sp_ladder_shows_flow_y_switching_to_mag1_with_no_signalling() {
    let r = play("fm-sp.yaml");
    let rows: Vec<Row> = r.ladder.iter().map(|l| ladder::parse(l)).collect();
    let decided = rows
        .iter()
        .position(|row| matches!(row, Row::Note { node: Some("lma"), text, .. } if text.contains("move flow Y")))
        .unwrap_or_else(|| panic!("no note of the LMA deciding to move flow Y:\n{}", r.ladder.join("\n")));
    let switched = rows[decided..]
        .iter()
        .position(|row| matches!(row, Row::Arrow(a) if a.data && a.kind == "Y"))
        .map(|k| decided + k)
        .unwrap_or_else(|| panic!("no data row of flow Y after the move:\n{}", r.ladder.join("\n")));
    let Row::Arrow(a) = &rows[switched] else { unreachable!("found as an arrow") };
    assert_eq!((a.from, a.to), ("mag1", "mn1"), "{}", r.ladder[switched]);
    assert!(a.fields.contains("now on mn1/if1, was mn1/if2"), "{}", r.ladder[switched]);
    let signalling: Vec<&String> = rows[decided..switched]
        .iter()
        .zip(&r.ladder[decided..switched])
        .filter(|(row, _)| matches!(row, Row::Arrow(a) if !a.data))
        .map(|(_, l)| l)
        .collect();
    assert!(signalling.is_empty(), "signalling between the decision and the switch: {signalling:?}");
    // Drawn: an arrow of `=` from MAG1's column to the MN's.
    let drawn = ladder::render_with(&r.ladder, &r.ladder_options);
    let header = drawn.lines().next().unwrap_or_default();
    let line = drawn.lines().find(|l| l.contains("now on mn1/if1")).unwrap_or_default();
    let col = |name: &str| header.find(name).map(|i| i + name.len() / 2);
    let (Some(m1), Some(mn)) = (col("mag1"), col("mn1")) else { panic!("no mag1 or mn1 column:\n{drawn}") };
    let arrow = line.get(m1 + 1..mn).unwrap_or_default();
    assert!(arrow.starts_with('=') && arrow.ends_with('>') && arrow.contains(" Y "), "{arrow:?} in\n{drawn}");
}

#[test]
fn every_ascii_ladder_line_of_the_catalogue_fits_72_columns() {
    let pattern = topologies().join("*.yaml");
    let files: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy()).unwrap().filter_map(Result::ok).collect();
    assert!(files.len() >= 10, "the catalogue is missing: {} files", files.len());
    for file in files {
        let s = scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let r = run_virtual(&file, &s);
        assert!(r.ladder.len() > 2, "{}: an empty ladder", file.display());
        let drawn = ladder::render_with(&r.ladder, &r.ladder_options);
        for (n, l) in drawn.lines().enumerate() {
            let w = l.chars().count();
            assert!(w <= 72, "{} line {}: {w} columns\n{l}\n\n{drawn}", file.display(), n + 1);
        }
        // Every message and row of the ladder is drawn, none left out.
        let drawn_rows =
            drawn.lines().filter(|l| l.trim_start().split(' ').next().is_some_and(|t| t.ends_with("ms"))).count();
        assert_eq!(drawn_rows, r.ladder.len(), "{}:\n{drawn}", file.display());
    }
}

/// A fresh folder that is removed however the test ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chromium_available() -> bool {
    Command::new("chromium").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

/// The DOM headless Chromium holds once `page` has loaded, bounded to a
/// minute; a profile of its own under `scratch`.
fn dump_dom(scratch: &Path, page: &Path) -> String {
    let profile = scratch.join(format!("profile-{}", page.file_name().unwrap().to_string_lossy()));
    let out = Command::new("timeout")
        .args(["60", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `text` as the data of a `data:` URL.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[test]
fn the_svg_ladder_renders_in_headless_chromium() {
    if !chromium_available() {
        if std::env::var_os("PMIPLAB_SKIP_CHROMIUM").is_some() {
            eprintln!("chromium not found; skipped because PMIPLAB_SKIP_CHROMIUM is set");
            return;
        }
        panic!("chromium is not installed: run ci/test.sh (it installs it) or set PMIPLAB_SKIP_CHROMIUM=1");
    }
    let scratch = Scratch(std::env::temp_dir().join(format!("pmiplab-svg-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    // A lost FMA (a drop mark) and a flow moved (data rows).
    for (file, id) in [("fm-fma-lost.yaml", "fma-lost"), ("fm-sp.yaml", "fm-sp")] {
        let r = play(file);
        let svg = render_svg(&r.ladder, &r.ladder_options);
        let path = scratch.0.join(format!("{id}.svg"));
        std::fs::write(&path, &svg).unwrap();

        // Opened as it is, the way a browser opens ladder.svg: an SVG
        // document with every arrow, no XML error page.
        let dom = dump_dom(&scratch.0, &path);
        assert!(!dom.contains("parsererror") && dom.contains("<svg"), "{file}: Chromium did not take the SVG:\n{dom}");
        let messages = r.ladder.iter().filter(|l| l.contains(" -> ")).count();
        let drawn = dom.matches("<line class=\"message").count();
        assert_eq!(drawn, messages, "{file}: {drawn} message arrows in the DOM, {messages} in the ladder");

        // Painted: drawn onto a canvas as an image, as a slide would, and
        // the pixels counted by colour.
        let page = scratch.0.join(format!("{id}.html"));
        let html = format!(
            r#"<!doctype html><html><body><canvas id="c"></canvas><img id="l" src="data:image/svg+xml;charset=utf-8,{}"
onload="const c=document.getElementById('c');c.width=this.naturalWidth;c.height=this.naturalHeight;
const g=c.getContext('2d');g.drawImage(this,0,0);const d=g.getImageData(0,0,c.width,c.height).data;
let ink=0,red=0,green=0,blue=0;for(let i=0;i<d.length;i+=4){{const r=d[i],gr=d[i+1],b=d[i+2];
if(r<200||gr<200||b<200)ink++;if(r>150&&gr<90&&b<90)red++;if(gr>100&&r<90&&b<90)green++;if(b>90&&r<60&&gr<90)blue++;}}
document.body.setAttribute('data-result','loaded '+this.naturalWidth+'x'+this.naturalHeight+' ink='+ink+' red='+red+' green='+green+' blue='+blue);"
onerror="document.body.setAttribute('data-result','error')"></body></html>"#,
            percent_encoded(&svg)
        );
        std::fs::write(&page, html).unwrap();
        let dom = dump_dom(&scratch.0, &page);
        let result = dom
            .split("data-result=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("{file}: the page never said how the image went:\n{dom}"));
        let count = |key: &str| -> u64 {
            result.split(' ').find_map(|w| w.strip_prefix(key)).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        assert!(result.starts_with("loaded "), "{file}: {result}");
        assert!(count("ink=") > 2000, "{file}: hardly anything painted: {result}");
        assert!(count("blue=") > 100, "{file}: no message arrows painted: {result}");
        if id == "fma-lost" {
            assert!(count("red=") > 20, "{file}: the dropped FMA is not painted red: {result}");
        } else {
            assert!(count("green=") > 100, "{file}: no data-plane rows painted: {result}");
        }
    }
}
