//! The lab's private run folder, made so that a local user cannot subvert
//! a root run: a fresh folder (never one that exists already, never a
//! symlink) under a name nobody can guess, mode 0700; files inside opened
//! with `O_EXCL | O_NOFOLLOW`; and a sweep of dead labs' folders that only
//! touches what it can prove is its own and never recurses.

use std::ffi::OsStr;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Every run folder starts with this, then `<pid>-<16 hex digits>`.
pub const PREFIX: &str = "pmiplab-";
/// The file inside a run folder that says it is one: root's, mode 0600,
/// holding [`marker_text`] for the pid that made it.
pub const MARKER: &str = ".pmiplab-run";
/// A run folder holds files only; the sweep goes no deeper than this and
/// removes no more entries than `SWEEP_MAX_ENTRIES` per folder.
const SWEEP_MAX_DEPTH: usize = 4;
const SWEEP_MAX_ENTRIES: usize = 10_000;
/// At most this many candidate folders are looked at per sweep.
const SWEEP_MAX_FOLDERS: usize = 1_000;

/// What the marker of a run folder made by `pid` holds.
pub fn marker_text(pid: u32) -> String {
    format!("pmiplab run folder of process {pid}\n")
}

/// 64 bits from the kernel's random source, as 16 hex digits.
pub fn random_suffix() -> io::Result<String> {
    let mut b = [0u8; 8];
    let mut filled = 0;
    while filled < b.len() {
        // SAFETY: the buffer is valid for `len - filled` bytes from `filled`.
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io::Error::new(e.kind(), format!("getrandom failed: {e}")));
        }
        filled += n as usize;
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Creates `path` as a new folder, mode 0700: fails if anything (folder,
/// file or symlink, dangling or not) is there already, and checks that
/// what it made is a folder owned by this user that no one else can open.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(0o700).create(path).map_err(|e| {
        let why = if e.kind() == io::ErrorKind::AlreadyExists {
            "something is there already, and a run folder is never reused".to_string()
        } else {
            e.to_string()
        };
        io::Error::new(e.kind(), format!("cannot create the run folder {}: {why}", path.display()))
    })?;
    check_private_dir(path)
}

/// `path` is a real folder (not a symlink) of this user, mode 0700.
fn check_private_dir(path: &Path) -> io::Result<()> {
    let m = std::fs::symlink_metadata(path)?;
    let euid = nix::unistd::geteuid().as_raw();
    if !m.file_type().is_dir() || m.uid() != euid || m.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private folder of uid {euid} (uid {}, mode {:o}); refusing to use it",
                path.display(),
                m.uid(),
                m.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Creates a new file in a run folder: never opens one that exists, never
/// follows a symlink (`O_CREAT | O_EXCL | O_NOFOLLOW`), mode 0600.
pub fn create_new_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))
}

/// Opens an existing file of the run folder to append to it, refusing a
/// symlink.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {} to append: {e}", path.display())))
}

/// A fresh run folder under `parent`: `pmiplab-<pid>-<random>`, mode 0700,
/// with its marker.
pub fn create_run_dir(parent: &Path) -> io::Result<PathBuf> {
    let pid = std::process::id();
    // A clash with a random 64-bit name is a sign of an attack or a bug:
    // a few tries, then an error, never a reuse.
    let mut last = None;
    for _ in 0..4 {
        let dir = parent.join(format!("{PREFIX}{pid}-{}", random_suffix()?));
        match create_private_dir(&dir) {
            Ok(()) => {
                let mut f = create_new_file(&dir.join(MARKER))?;
                f.write_all(marker_text(pid).as_bytes())?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot create a run folder")))
}

/// The pid in a run folder's name, if the name has the exact shape
/// `pmiplab-<pid>-<16 lowercase hex digits>`.
pub fn run_dir_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    let (pid, suffix) = name.strip_prefix(PREFIX)?.split_once('-')?;
    let hex = suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let digits = !pid.is_empty() && pid.len() <= 10 && pid.bytes().all(|b| b.is_ascii_digit());
    (hex && digits).then(|| pid.parse().ok()).flatten()
}

/// Opens a folder relative to `dir` without following a symlink.
fn open_dir_at(dir: &impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    openat(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(io::Error::from)
}

/// Is the folder open as `dir` a run folder this user made in a process
/// `pid`? Its marker must be a regular file of this user, not writable by
/// others, holding exactly the expected text.
fn is_ours(dir: &OwnedFd, pid: u32) -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    let Ok(st) = nix::sys::stat::fstat(dir) else { return false };
    if st.st_uid != euid || st.st_mode & 0o077 != 0 || st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return false;
    }
    let Ok(fd) = openat(dir, MARKER, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) else {
        return false;
    };
    let Ok(m) = nix::sys::stat::fstat(&fd) else { return false };
    if m.st_uid != euid || m.st_mode & libc::S_IFMT != libc::S_IFREG || m.st_mode & 0o022 != 0 || m.st_size > 256 {
        return false;
    }
    let mut text = String::new();
    let ok = File::from(fd).take(256).read_to_string(&mut text).is_ok();
    ok && text == marker_text(pid)
}

/// One folder of a walk: its descriptor, its name in its parent, and the
/// subfolders still to visit.
struct Level {
    fd: OwnedFd,
    name: Option<Vec<u8>>,
    subdirs: Vec<Vec<u8>>,
}

/// Reads the folder open as `fd`: notes its subfolders and, when
/// `delete`, removes everything else in it. `None` when more than
/// `SWEEP_MAX_ENTRIES` entries have been seen in the whole walk.
fn read_level(fd: OwnedFd, name: Option<Vec<u8>>, delete: bool, seen: &mut usize) -> io::Result<Option<Level>> {
    // A new open of the folder, so the listing starts at its beginning.
    let mut dir = nix::dir::Dir::from_fd(open_dir_at(&fd, OsStr::new("."))?).map_err(io::Error::from)?;
    let mut subdirs = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let n = entry.file_name();
        if n.to_bytes() == b"." || n.to_bytes() == b".." {
            continue;
        }
        *seen += 1;
        if *seen > SWEEP_MAX_ENTRIES {
            return Ok(None);
        }
        let st = fstatat(&fd, n, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io::Error::from)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            subdirs.push(n.to_bytes().to_vec());
        } else if delete {
            unlinkat(&fd, n, UnlinkatFlags::NoRemoveDir).map_err(io::Error::from)?;
        }
    }
    Ok(Some(Level { fd, name, subdirs }))
}

/// Walks the tree below the folder open as `top` with an explicit stack
/// (no recursion, at most `SWEEP_MAX_DEPTH + 1` descriptors open), and
/// when `delete` removes everything in it. Returns false, having touched
/// nothing when not deleting, if the tree is deeper than
/// `SWEEP_MAX_DEPTH` or holds more than `SWEEP_MAX_ENTRIES` entries.
fn walk(top: OwnedFd, delete: bool) -> io::Result<bool> {
    let mut seen = 0usize;
    let Some(first) = read_level(top, None, delete, &mut seen)? else { return Ok(false) };
    let mut stack = vec![first];
    loop {
        let depth = stack.len();
        let Some(level) = stack.last_mut() else { break };
        match level.subdirs.pop() {
            Some(sub) => {
                if depth > SWEEP_MAX_DEPTH {
                    return Ok(false);
                }
                let child = open_dir_at(&level.fd, OsStr::from_bytes(&sub))?;
                match read_level(child, Some(sub), delete, &mut seen)? {
                    Some(l) => stack.push(l),
                    None => return Ok(false),
                }
            }
            None => {
                let done = stack.pop();
                if let (true, Some(Level { name: Some(name), .. }), Some(parent)) = (delete, done, stack.last()) {
                    unlinkat(&parent.fd, OsStr::from_bytes(&name), UnlinkatFlags::RemoveDir)
                        .map_err(io::Error::from)?;
                }
            }
        }
    }
    Ok(true)
}

/// Empties the folder open as `top` if its tree is within the bounds, and
/// leaves it untouched (returning false) if not.
fn empty_bounded(top: OwnedFd) -> io::Result<bool> {
    let again = open_dir_at(&top, OsStr::new("."))?;
    if !walk(again, false)? {
        return Ok(false);
    }
    walk(top, true)
}

/// Removes the run folders under `parent` of labs whose process is gone
/// (their namespaces and daemons died with it). Only folders named like a
/// run folder, owned by this user, mode 0700, with a marker this user
/// wrote for that same pid; never following a symlink; bounded in the
/// number of folders, the depth and the entries it looks at. Returns the
/// folders removed.
pub fn sweep_stale(parent: &Path) -> Vec<PathBuf> {
    let mut swept = Vec::new();
    let Ok(parent_fd) = File::open(parent) else { return swept };
    let Ok(entries) = std::fs::read_dir(parent) else { return swept };
    let me = std::process::id();
    for e in entries.filter_map(Result::ok).take(SWEEP_MAX_FOLDERS * 100) {
        if swept.len() >= SWEEP_MAX_FOLDERS {
            break;
        }
        let name = e.file_name();
        let Some(pid) = run_dir_pid(&name) else { continue };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let Ok(fd) = open_dir_at(&parent_fd, &name) else { continue };
        if !is_ours(&fd, pid) {
            continue;
        }
        match empty_bounded(fd) {
            Ok(true) => {
                let r = unlinkat(&parent_fd, name.as_os_str(), UnlinkatFlags::RemoveDir);
                if r.is_ok() {
                    swept.push(parent.join(&name));
                }
            }
            Ok(false) => tracing::warn!(
                "{} looks like a dead lab's folder but holds more than a lab leaves; left alone",
                parent.join(&name).display()
            ),
            Err(e) => tracing::warn!("cannot sweep {}: {e}", parent.join(&name).display()),
        }
    }
    swept
}

/// Removes a run folder this process made (at most a few levels, bounded
/// like the sweep).
pub fn remove_run_dir(dir: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is no run folder", dir.display())));
    };
    let parent_fd = File::open(parent)?;
    let fd = open_dir_at(&parent_fd, name)?;
    if !empty_bounded(fd)? {
        return Err(io::Error::other(format!("{} holds more than a lab leaves; left alone", dir.display())));
    }
    unlinkat(&parent_fd, name, UnlinkatFlags::RemoveDir).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_run_folder_names_carry_a_pid() {
        assert_eq!(run_dir_pid(OsStr::new("pmiplab-12-0123456789abcdef")), Some(12));
        for bad in [
            "pmiplab-12-0",
            "pmiplab-12-0123456789ABCDEF",
            "pmiplab--0123456789abcdef",
            "pmiplab-x-0123456789abcdef",
            "pmiplab-12-0123456789abcdef0",
            "pmiplab-kill-test-1.json",
        ] {
            assert_eq!(run_dir_pid(OsStr::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn suffixes_differ() {
        assert_ne!(random_suffix().unwrap(), random_suffix().unwrap());
    }
}
