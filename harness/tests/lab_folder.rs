//! A local user cannot subvert a root run through its folder: the run
//! folder is new, private and unguessable; planted folders and symlinks are
//! refused; files in it are never opened through a symlink; and the sweep
//! of dead labs' folders only removes what it can prove is its own, without
//! recursing, so a 15,000-deep tree with a matching name crashes nothing.
//!
//! Lab::new needs root (it opens a netlink socket and later labs make
//! namespaces); these tests are skipped without it only when
//! PMIPLAB_SKIP_NETNS is set.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pmiplab::lab::rundir::{self, create_private_dir, marker_text, run_dir_pid, MARKER};
use pmiplab::lab::Lab;

fn skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    if std::env::var_os("PMIPLAB_SKIP_NETNS").is_some() {
        return true;
    }
    panic!("this test needs root; run it as root (CI does) or set PMIPLAB_SKIP_NETNS=1");
}

/// A scratch folder of this test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "pmiplab-test-{tag}-{}-{}",
            std::process::id(),
            rundir::random_suffix().unwrap()
        ));
        create_private_dir(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_planted_folder_or_symlink_is_never_taken_as_a_run_folder() {
    if skip() {
        return;
    }
    let s = Scratch::new("plant");
    let victim = s.0.join("victim");
    fs::create_dir(&victim).unwrap();
    // A symlink to a folder, a dangling symlink, a folder of another user
    // with a symlinked log inside: each is where a run folder would go.
    let link = s.0.join("pmiplab-1-0000000000000001");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let dangling = s.0.join("pmiplab-1-0000000000000002");
    std::os::unix::fs::symlink(s.0.join("nowhere"), &dangling).unwrap();
    let foreign = s.0.join("pmiplab-1-0000000000000003");
    fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::symlink(victim.join("owned"), foreign.join("lma.log")).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    for p in [&link, &dangling, &foreign] {
        let e = create_private_dir(p).expect_err("a path that exists must be refused");
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains("never reused"), "{e}");
    }
    assert!(!s.0.join("nowhere").exists(), "the dangling symlink was followed");
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0, "something was written through a symlink");
    assert_eq!(fs::symlink_metadata(&foreign).unwrap().uid(), 65534, "the planted folder was taken over");
}

#[test]
fn lab_folders_are_new_private_and_unguessable() {
    if skip() {
        return;
    }
    let a = Lab::new().unwrap();
    let b = Lab::new().unwrap();
    assert_ne!(a.dir, b.dir);
    for lab in [&a, &b] {
        let name = lab.dir.file_name().unwrap();
        assert_eq!(run_dir_pid(name), Some(std::process::id()), "{}", lab.dir.display());
        let m = fs::symlink_metadata(&lab.dir).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
        assert_eq!(m.permissions().mode() & 0o777, 0o700);
        assert_eq!(fs::read_to_string(lab.dir.join(MARKER)).unwrap(), marker_text(std::process::id()));
    }
    let dir = a.dir.clone();
    drop(a);
    assert!(!dir.exists(), "a lab's folder outlives it");
}

#[test]
fn a_symlink_planted_in_a_lab_folder_is_not_followed() {
    if skip() {
        return;
    }
    let s = Scratch::new("victim");
    let victim = s.0.join("precious");
    fs::write(&victim, "keep me\n").unwrap();
    let mut lab = Lab::new().unwrap();
    std::os::unix::fs::symlink(&victim, lab.dir.join("lma.log")).unwrap();
    let e = lab
        .start_unready("lma", Path::new("/bin/true"), &serde_json::json!({}), &[])
        .expect_err("the log must not be opened through a symlink");
    assert!(e.to_string().contains("lma.log"), "{e}");
    // The same for a configuration file.
    std::os::unix::fs::symlink(&victim, lab.dir.join("mag1.json")).unwrap();
    assert!(lab.start_unready("mag1", Path::new("/bin/true"), &serde_json::json!({}), &[]).is_err());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n");
}

/// Makes `top/a/a/…/a`, `depth` deep, with descriptors (the path is far
/// longer than PATH_MAX).
fn deep_tree(top: &Path, depth: usize) {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    let mut fd = openat(nix::fcntl::AT_FDCWD, top, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    for _ in 0..depth {
        mkdirat(&fd, "a", Mode::from_bits_truncate(0o700)).unwrap();
        fd = openat(&fd, "a", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW, Mode::empty()).unwrap();
    }
}

/// Removes what `deep_tree` made from the bottom up: down to the deepest
/// folder by descriptors, then up through `..`, removing each level.
fn remove_deep_tree(top: &Path) {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    use nix::unistd::{unlinkat, UnlinkatFlags};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
    let Ok(mut fd) = openat(nix::fcntl::AT_FDCWD, top, flags, Mode::empty()) else { return };
    let mut depth = 0;
    while let Ok(child) = openat(&fd, "a", flags, Mode::empty()) {
        fd = child;
        depth += 1;
    }
    for _ in 0..depth {
        let parent = openat(&fd, "..", flags, Mode::empty()).unwrap();
        unlinkat(&parent, "a", UnlinkatFlags::RemoveDir).unwrap();
        fd = parent;
    }
    let _ = fs::remove_dir_all(top);
}

struct DeepTrees(Vec<PathBuf>);

impl Drop for DeepTrees {
    fn drop(&mut self) {
        for t in &self.0 {
            remove_deep_tree(t);
        }
    }
}

#[test]
fn a_15000_deep_folder_with_a_run_folder_name_crashes_no_later_run() {
    if skip() {
        return;
    }
    let tmp = std::env::temp_dir();
    // pids no process can have (above the kernel's pid_max).
    let dead = 4_000_000_000u32 + std::process::id() % 100_000 * 10;
    let new_style = tmp.join(format!("pmiplab-{}-{}", dead + 1, rundir::random_suffix().unwrap()));
    let mut trees = DeepTrees(Vec::new());
    fs::create_dir(&new_style).unwrap();
    fs::set_permissions(&new_style, fs::Permissions::from_mode(0o700)).unwrap();
    trees.0.push(new_style.clone());
    deep_tree(&new_style, 15_000);
    // The new-style one even carries a marker the sweep would accept.
    fs::write(new_style.join(MARKER), marker_text(dead + 1)).unwrap();
    // A real dead lab's folder, a look-alike with another pid in its
    // marker, and one of another user: only the first is swept.
    let stale = tmp.join(format!("pmiplab-{}-{}", dead + 2, rundir::random_suffix().unwrap()));
    let wrong_marker = tmp.join(format!("pmiplab-{}-{}", dead + 3, rundir::random_suffix().unwrap()));
    let foreign = tmp.join(format!("pmiplab-{}-{}", dead + 4, rundir::random_suffix().unwrap()));
    for (dir, pid) in [(&stale, dead + 2), (&wrong_marker, dead + 9), (&foreign, dead + 4)] {
        create_private_dir(dir).unwrap();
        fs::write(dir.join(MARKER), marker_text(pid)).unwrap();
        fs::write(dir.join("lma.log"), "a log\n").unwrap();
    }
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(foreign.join(MARKER), Some(65534), Some(65534)).unwrap();

    // The sweep runs on a thread with a small stack: it must not recurse.
    let lab = std::thread::Builder::new().stack_size(256 * 1024).spawn(Lab::new).unwrap().join();
    let lab = lab.expect("the sweep crashed").expect("a lab after the deep folders");
    drop(lab);

    assert!(!stale.exists(), "a dead lab's own folder is swept");
    assert!(wrong_marker.exists(), "a folder whose marker names another pid is left alone");
    assert!(foreign.exists(), "another user's folder is left alone");
    assert!(new_style.join("a").exists() && new_style.join(MARKER).exists(), "a deep tree is left alone, all of it");
    for d in [&wrong_marker, &foreign] {
        fs::remove_dir_all(d).unwrap();
    }
    drop(trees);
    assert!(!new_style.exists());
}
