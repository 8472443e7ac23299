//! Files the agent reads every cycle (`/proc/stat`, a cgroup's
//! `memory.current`, …), kept open between cycles.
//!
//! Opening is most of what reading a small kernel file costs: the path walk
//! and the open and close calls take more CPU than the read itself. A kernel
//! file (procfs, sysfs, cgroupfs) read again from offset 0 is generated
//! afresh, so an open descriptor serves every cycle, mostly with one
//! `pread`: where the caller knows the file's shape (a cgroup value, a
//! procfs file of short records) a short read is its end; elsewhere a
//! second read finds it. A file that is not a kernel file (a test's
//! fixture) is checked for having been replaced or removed (its link count)
//! before each read, which a kernel file needs not be: a removed cgroup's
//! files answer `ENODEV`.
//!
//! A file may pin what it names: `/proc/<pid>/net/dev` holds the process's
//! network namespace while open, and goes on answering after the process is
//! gone. Its reader lets go of it ([`KernelFiles::forget`]) when it learns
//! the owner is gone.
//!
//! Bounded: beyond `limit` open files a read opens and closes as before, so
//! a host with many environments stays within the process's descriptor limit.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Files a host source keeps open: /proc's stat, meminfo, loadavg,
/// diskstats, net/dev, mountinfo and pressure, with room to spare.
pub(crate) const HOST_FILES: usize = 16;

/// Files the environment source keeps open: three per environment (CPU
/// time, memory, net/dev) for 170 environments. With the host sources' that stays far
/// below the usual descriptor limit of 1,024.
pub(crate) const ENV_FILES: usize = 512;

/// Open files by path; see the module's docs.
#[derive(Debug)]
pub(crate) struct KernelFiles {
    state: Mutex<State>,
    limit: usize,
}

#[derive(Debug, Default)]
struct State {
    open: HashMap<PathBuf, Open>,
    /// Where every read lands first: zeroed once, not once per read.
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Open {
    file: File,
    fs: Fs,
}

/// The file system a kept file is on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fs {
    /// Not a kernel file: checked for being replaced before each read.
    Plain,
    /// procfs: its files are `seq_file`s. One read gives as many whole
    /// records as fit in the kernel's page-sized buffer, so a read that
    /// leaves more room than a record needs found the end.
    Procfs,
    /// sysfs or cgroupfs (kernfs): a file that is one value comes whole from
    /// one read that has room for it.
    Kernfs,
}

/// What the caller knows of a file, which says when a short read is its end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Anything (a mount table, whose lines can be long): read until a read
    /// returns nothing.
    Any,
    /// A cgroup value (`memory.current`, `cpu.stat`, `cpuacct.usage`).
    Value,
    /// A procfs file of one record (`stat`, `meminfo`) or of records under
    /// [`RECORD_ROOM`] each (`net/dev`, `diskstats`).
    ShortRecords,
}

/// Room left in a first read that shows a procfs file of short records has
/// ended: the kernel fills a page (4 KiB) per read, and stops early only for
/// a record that does not fit.
const RECORD_ROOM: usize = 1024;

impl KernelFiles {
    /// Keeps at most `limit` files open (0: every read opens and closes).
    pub(crate) fn new(limit: usize) -> Self {
        KernelFiles {
            state: Mutex::new(State::default()),
            limit,
        }
    }

    /// The whole text of `path` as it is now.
    pub(crate) fn read(&self, path: &Path) -> io::Result<String> {
        self.read_as(path, Shape::Any)
    }

    /// [`read`](Self::read) of a procfs file of one record (`stat`,
    /// `meminfo`, `loadavg`) or of short records (`net/dev`, `diskstats`:
    /// one line per device), mostly in one read.
    pub(crate) fn read_short_records(&self, path: &Path) -> io::Result<String> {
        self.read_as(path, Shape::ShortRecords)
    }

    /// [`read`](Self::read) of a cgroup or sysfs file that is one value
    /// (`memory.current`, `cpu.stat`, `cpuacct.usage`): the kernel gives it
    /// whole in one read, so the read that would find the end is left out.
    /// Not for lists (`cgroup.procs`), which come a page at a time.
    pub(crate) fn read_value(&self, path: &Path) -> io::Result<String> {
        self.read_as(path, Shape::Value)
    }

    /// The text of a mount table (`/proc/<pid>/mountinfo`) if it changed
    /// since the last read of it, `None` if not. The kernel marks a kept
    /// mount table for `poll` when a mount comes or goes, so an unchanged
    /// one is not generated again. A file that is not kept open, or not a
    /// kernel file, always counts as changed.
    pub(crate) fn read_if_changed(&self, path: &Path) -> io::Result<Option<String>> {
        {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(o) = state.open.get(path).filter(|o| o.fs != Fs::Plain) {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                use std::os::fd::AsFd;
                let mut fds = [PollFd::new(o.file.as_fd(), PollFlags::POLLPRI)];
                let changed = match poll(&mut fds, PollTimeout::ZERO) {
                    Ok(_) => fds[0].revents().is_none_or(|r| {
                        r.intersects(PollFlags::POLLPRI | PollFlags::POLLERR | PollFlags::POLLNVAL)
                    }),
                    Err(_) => true,
                };
                if !changed {
                    return Ok(None);
                }
            }
        }
        self.read(path).map(Some)
    }

    fn read_as(&self, path: &Path, shape: Shape) -> io::Result<String> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let State { open, buf } = &mut *guard;
        if let Some(o) = open.get(path) {
            match o.reread(buf, shape) {
                Some(Ok(text)) => return Ok(text),
                // Replaced, removed or failing: open it again below.
                Some(Err(_)) | None => {
                    open.remove(path);
                }
            }
        }
        let file = File::open(path)?;
        let fs =
            nix::sys::statfs::fstatfs(&file).map_or(Fs::Plain, |s| Fs::of(s.filesystem_type()));
        let text = read_from_start(&file, buf, fs.ends_short(shape))?;
        if open.len() < self.limit {
            open.insert(path.to_path_buf(), Open { file, fs });
        }
        Ok(text)
    }

    /// Closes `path` if it is open.
    pub(crate) fn forget(&self, path: &Path) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.open.remove(path);
    }

    /// Closes every file, e.g. when the environments were looked up again.
    pub(crate) fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.open.clear();
    }

    /// How many files are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .len()
    }
}

impl Open {
    /// The text, or `None` where the file is no longer the one at its path.
    fn reread(&self, buf: &mut Vec<u8>, shape: Shape) -> Option<io::Result<String>> {
        if self.fs == Fs::Plain {
            // A fixture rewritten in place is read as it is; one renamed
            // over or removed has no links left.
            match self.file.metadata() {
                Ok(m) if m.nlink() > 0 => {}
                _ => return None,
            }
        }
        Some(read_from_start(&self.file, buf, self.fs.ends_short(shape)))
    }
}

/// A small file read once: open, read to the end, close (no `stat` for a
/// size hint, which kernel files report as 0 anyway).
pub(crate) fn read_once(path: &Path) -> io::Result<String> {
    read_from_start(&File::open(path)?, &mut Vec::new(), None)
}

impl Fs {
    fn of(t: nix::sys::statfs::FsType) -> Fs {
        use nix::sys::statfs::{
            CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, PROC_SUPER_MAGIC, SYSFS_MAGIC,
        };
        if t == PROC_SUPER_MAGIC {
            Fs::Procfs
        } else if [SYSFS_MAGIC, CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC].contains(&t) {
            Fs::Kernfs
        } else {
            Fs::Plain
        }
    }

    /// How much room a first read must leave to be the end of a file of
    /// `shape` here; `None`: only an empty read is.
    fn ends_short(self, shape: Shape) -> Option<usize> {
        match (self, shape) {
            (Fs::Kernfs, Shape::Value) => Some(1),
            (Fs::Procfs, Shape::ShortRecords) => Some(RECORD_ROOM),
            _ => None,
        }
    }
}

/// Reads from offset 0 to the end. A first read that leaves at least `room`
/// of the buffer free is the end; otherwise (a list larger than a page comes
/// a page at a time) the end is a read that returns nothing.
fn read_from_start(file: &File, buf: &mut Vec<u8>, room: Option<usize>) -> io::Result<String> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize((len * 2).max(4096), 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => {
                let first = len == 0;
                len += n;
                // The kernel's page, not the buffer, bounds what one read gives.
                if first && room.is_some_and(|r| len + r <= buf.len().min(4096)) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    std::str::from_utf8(&buf[..len])
        .map(String::from)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_file_reads_what_is_there_now() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory.current");
        std::fs::write(&p, "1\n").unwrap();
        let files = KernelFiles::new(8);
        assert_eq!(files.read(&p).unwrap(), "1\n");
        assert_eq!(files.len(), 1);
        // Rewritten in place (the same inode), as the kernel regenerates.
        std::fs::write(&p, "22\n").unwrap();
        assert_eq!(files.read(&p).unwrap(), "22\n");
        // Replaced by a rename: the kept descriptor is of the old file.
        let tmp = dir.path().join("new");
        std::fs::write(&tmp, "333\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_eq!(files.read(&p).unwrap(), "333\n");
        // Removed: an error, as a removed cgroup's files give.
        std::fs::remove_file(&p).unwrap();
        assert_eq!(files.read(&p).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(files.len(), 0);
    }

    #[test]
    fn kernel_files_are_read_afresh_and_whole() {
        let files = KernelFiles::new(8);
        let p = Path::new("/proc/self/mountinfo");
        let whole = std::fs::read_to_string(p).unwrap();
        assert_eq!(files.read(p).unwrap(), whole);
        assert_eq!(
            files.read(p).unwrap(),
            whole,
            "read again from the kept descriptor"
        );
        // One read of a seq_file gives at most a page: smaps is several.
        let smaps = files.read(Path::new("/proc/self/smaps")).unwrap();
        assert!(
            smaps.len() > 4096 && smaps.ends_with('\n'),
            "{} bytes",
            smaps.len()
        );
        assert_eq!(files.len(), 2);
        assert!(files
            .state
            .lock()
            .unwrap()
            .open
            .values()
            .all(|o| o.fs == Fs::Procfs));
    }

    #[test]
    fn cgroup_value_files_are_one_read_each_and_lists_whole() {
        let v1 = Path::new("/sys/fs/cgroup/memory/memory.usage_in_bytes");
        let v2 = Path::new("/sys/fs/cgroup/cpu.stat");
        let Some(value) = [v1, v2].into_iter().find(|p| p.exists()) else {
            eprintln!("no cgroup hierarchy mounted here; nothing to check");
            return;
        };
        let files = KernelFiles::new(8);
        for _ in 0..2 {
            let text = files.read_value(value).unwrap();
            assert!(text.ends_with('\n') && text.len() < 4096, "{text}");
        }
        assert!(files
            .state
            .lock()
            .unwrap()
            .open
            .values()
            .all(|o| o.fs == Fs::Kernfs));
        // A list (one record per process) is read to its end even on kernfs.
        let procs = value.with_file_name("cgroup.procs");
        let kept = files.read(&procs).unwrap();
        assert!(kept.lines().all(|l| l.parse::<u32>().is_ok()) && kept.ends_with('\n'));
    }

    #[test]
    fn procfs_files_of_short_records_are_read_whole() {
        let files = KernelFiles::new(8);
        for name in ["net/dev", "meminfo", "loadavg", "diskstats"] {
            let p = Path::new("/proc").join(name);
            let kept = files.read_short_records(&p).unwrap();
            let fresh = std::fs::read_to_string(&p).unwrap();
            assert_eq!(kept.lines().count(), fresh.lines().count(), "{name}");
            assert!(kept.ends_with('\n'), "{name}: {kept}");
        }
        // Many pages of short lines: a full first read is not the end.
        let syms = Path::new("/proc/kallsyms");
        if let Ok(fresh) = std::fs::read_to_string(syms) {
            let kept = files.read_short_records(syms).unwrap();
            assert!(kept.len() > 3 * 4096, "{} bytes", kept.len());
            assert_eq!(kept.lines().count(), fresh.lines().count());
        }
    }

    #[test]
    fn a_kept_mount_table_is_read_again_only_when_a_mount_changes() {
        let files = KernelFiles::new(8);
        let p = Path::new("/proc/self/mountinfo");
        let first = files
            .read_if_changed(p)
            .unwrap()
            .expect("read the first time");
        assert!(first.contains(" / "), "{first}");
        assert_eq!(
            files.read_if_changed(p).unwrap(),
            None,
            "nothing mounted since"
        );
        // A mount in a namespace of its own would show; where this process
        // may not make one (not root), the unchanged case is all there is.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().display().to_string();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "none", &target])
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            let after = files.read_if_changed(p).unwrap().expect("a mount came");
            let _ = std::process::Command::new("umount").arg(&target).status();
            assert!(after.contains(&target), "{after}");
        } else {
            eprintln!("cannot mount here; only the unchanged case was checked");
        }
    }

    #[test]
    fn beyond_the_limit_files_are_read_and_closed() {
        let dir = tempfile::tempdir().unwrap();
        let files = KernelFiles::new(2);
        for i in 0..5 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, format!("{i}")).unwrap();
            assert_eq!(files.read(&p).unwrap(), i.to_string());
        }
        assert_eq!(files.len(), 2);
        files.clear();
        assert_eq!(files.len(), 0);
    }
}
