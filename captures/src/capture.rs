//! Capture threads: one per link end, inside its namespace (the caller
//! enters it), reading frames with pnet and writing them to pcapng.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pnet_datalink::{Channel, Config};

use crate::pcapng::{Writer, LINKTYPE_ETHERNET};

pub struct Capture {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<u64>>>,
}

impl Capture {
    /// Starts capturing `iface`, which must be visible to the calling
    /// thread (its namespace). `enter` runs first on the capture thread,
    /// e.g. to join the namespace.
    pub fn start(
        iface: &str,
        path: &Path,
        enter: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> io::Result<Capture> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let (name, file, flag) = (iface.to_string(), path.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || -> io::Result<u64> {
            let opened = (|| {
                enter()?;
                let nic = pnet_datalink::interfaces().into_iter().find(|i| i.name == name).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("no interface {name} to capture"))
                })?;
                let config = Config { read_timeout: Some(Duration::from_millis(20)), ..Default::default() };
                let rx = match pnet_datalink::channel(&nic, config)? {
                    Channel::Ethernet(_, rx) => rx,
                    _ => return Err(io::Error::other(format!("{name}: not an Ethernet channel"))),
                };
                let w = Writer::new(BufWriter::new(File::create(&file)?), &[(&name, LINKTYPE_ETHERNET)])?;
                Ok((rx, w))
            })();
            let (mut rx, mut w) = match opened {
                Ok(x) => {
                    let _ = ready_tx.send(Ok(()));
                    x
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                match rx.next() {
                    Ok(frame) => {
                        let ts =
                            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
                        w.packet(0, ts, frame)?;
                        n += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            w.flush()?;
            Ok(n)
        });
        ready_rx.recv().map_err(|_| io::Error::other("the capture thread died"))??;
        Ok(Capture { path: path.to_path_buf(), stop, thread: Some(thread) })
    }

    /// Stops the capture and returns how many frames it wrote.
    pub fn stop(&mut self) -> io::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| io::Error::other("the capture thread panicked"))?,
            None => Ok(0),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
