//! Packet sources: live interfaces and pcap/pcapng files, both through libpcap.

use std::path::{Path, PathBuf};

use netstream_wire::{LinkType, UnsupportedLinkType};
use pcap::{Activated, Capture, Precision};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read capture file {path}: {msg}")]
    Open { path: PathBuf, msg: String },
    #[error("capture file {path}: {err}")]
    FileLinkType {
        path: PathBuf,
        err: UnsupportedLinkType,
    },
    #[error("cannot capture on interface {iface:?}: {msg}")]
    Live { iface: String, msg: String },
    #[error("interface {iface:?}: {err}")]
    LiveLinkType {
        iface: String,
        err: UnsupportedLinkType,
    },
    #[error("invalid --filter {filter:?}: {msg}")]
    Filter { filter: String, msg: String },
}

/// Live-capture settings.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub snaplen: i32,
    pub promiscuous: bool,
    pub buffer_bytes: i32,
    pub immediate: bool,
    pub filter: Option<String>,
}

/// An opened source, ready to read.
pub struct Opened<T: Activated + ?Sized> {
    /// The `interface` label and the name written into records.
    pub label: String,
    pub link: LinkType,
    pub capture: Capture<T>,
    /// Whether timestamps are in nanoseconds (else microseconds).
    pub nanos: bool,
    /// File size, for progress.
    pub file_size: Option<u64>,
    /// Live captures are non-blocking: the loop waits on this descriptor with a timeout, so it
    /// notices shutdown and polls drop stats on a quiet link (libpcap's own read timeout does
    /// not apply in immediate mode).
    pub wait_fd: Option<std::os::fd::RawFd>,
}

fn link_type<T: Activated + ?Sized>(cap: &Capture<T>) -> Result<LinkType, UnsupportedLinkType> {
    LinkType::from_dlt(cap.get_datalink().0 as u32)
}

fn set_filter<T: Activated + ?Sized>(
    cap: &mut Capture<T>,
    filter: Option<&str>,
) -> Result<(), SourceError> {
    if let Some(f) = filter {
        cap.filter(f, true).map_err(|e| SourceError::Filter {
            filter: f.to_string(),
            msg: e.to_string(),
        })?;
    }
    Ok(())
}

/// Opens a pcap or pcapng file (either byte order, µs or ns) with nanosecond timestamps.
pub fn open_file(path: &Path, filter: Option<&str>) -> Result<Opened<pcap::Offline>, SourceError> {
    let meta = std::fs::metadata(path).map_err(|e| SourceError::Open {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    if meta.is_dir() {
        return Err(SourceError::Open {
            path: path.to_path_buf(),
            msg: "is a directory".into(),
        });
    }
    let mut capture = Capture::from_file_with_precision(path, Precision::Nano).map_err(|e| {
        SourceError::Open {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }
    })?;
    let link = link_type(&capture).map_err(|err| SourceError::FileLinkType {
        path: path.to_path_buf(),
        err,
    })?;
    set_filter(&mut capture, filter)?;
    let label = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(Opened {
        label,
        link,
        capture,
        nanos: true,
        file_size: Some(meta.len()),
        wait_fd: None,
    })
}

/// Opens a live interface, non-blocking with a 100 ms buffer timeout (or in immediate mode), so
/// the loop can notice shutdown and poll stats on a quiet link.
pub fn open_live(iface: &str, opts: &LiveOptions) -> Result<Opened<pcap::Active>, SourceError> {
    let err = |e: pcap::Error| SourceError::Live {
        iface: iface.to_string(),
        msg: match e {
            pcap::Error::PcapError(ref m) if m.contains("permitted") || m.contains("ermission") => {
                format!("{m} (the probe needs CAP_NET_RAW and CAP_NET_ADMIN, or root)")
            }
            other => other.to_string(),
        },
    };
    let inactive = Capture::from_device(iface)
        .map_err(err)?
        .snaplen(opts.snaplen)
        .promisc(opts.promiscuous)
        .immediate_mode(opts.immediate)
        .buffer_size(opts.buffer_bytes)
        .timeout(100);
    // Linux's packet socket supports nanosecond timestamps (libpcap >= 1.5).
    let mut capture = inactive
        .precision(Precision::Nano)
        .open()
        .and_then(|c| c.setnonblock())
        .map_err(err)?;
    let nanos = true;
    let wait_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&capture));
    let link = link_type(&capture).map_err(|err| SourceError::LiveLinkType {
        iface: iface.to_string(),
        err,
    })?;
    set_filter(&mut capture, opts.filter.as_deref())?;
    Ok(Opened {
        label: iface.to_string(),
        link,
        capture,
        nanos,
        file_size: None,
        wait_fd,
    })
}

/// Timestamp of a packet header in ns since the epoch.
#[inline]
pub fn timestamp_ns(h: &pcap::PacketHeader, nanos: bool) -> u64 {
    let secs = h.ts.tv_sec.max(0) as u64;
    let frac = h.ts.tv_usec.max(0) as u64;
    secs.saturating_mul(1_000_000_000).saturating_add(if nanos {
        frac
    } else {
        frac.saturating_mul(1000)
    })
}

/// Waits up to `timeout_ms` for `fd` to become readable.
pub fn wait_readable(fd: std::os::fd::RawFd, timeout_ms: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, count 1; the descriptor belongs to the live
    // capture, which outlives this call.
    unsafe {
        libc::poll(&mut pfd, 1, timeout_ms);
    }
}
