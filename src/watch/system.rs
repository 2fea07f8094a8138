//! `system` watches: CPU, load, memory, swap and disks, through sysinfo (and statvfs for
//! inodes, which sysinfo does not report). Sampling reads /proc and calls statvfs, so it
//! runs on the blocking pool, never on the async thread.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Map, Value};
use sysinfo::{Disks, System};

use super::periodic::{self, PeriodicHandle};
use crate::config::SystemWatch;

/// What a system watch keeps between samples: CPU usage is a difference of counters.
pub struct Sampler {
    system: System,
}

impl Default for Sampler {
    fn default() -> Self {
        let mut system = System::new();
        // The first reading is the baseline that the first sample's CPU usage is
        // computed against.
        system.refresh_cpu_usage();
        Sampler { system }
    }
}

pub fn start(
    to: super::Emitter,
    config: SystemWatch,
    clock: super::clock::Clock,
) -> PeriodicHandle {
    let every = config.every;
    periodic::spawn_checks(
        to,
        periodic::Schedule { every, clock },
        (config, Mutex::new(Sampler::default())),
        |c, _| async move {
            tokio::task::spawn_blocking(move || {
                let (config, sampler) = &*c;
                match sampler.lock() {
                    Ok(mut s) => s.sample(config),
                    Err(p) => p.into_inner().sample(config),
                }
            })
            .await
            .unwrap_or_default()
        },
    )
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        return 0.0;
    }
    (part / whole * 10_000.0).round() / 100.0
}

impl Sampler {
    /// One sample. CPU usage is over the time since the previous one.
    pub fn sample(&mut self, config: &SystemWatch) -> Map<String, Value> {
        let s = &mut self.system;
        s.refresh_cpu_usage();
        s.refresh_memory();
        let load = System::load_average();
        let mut f = Map::new();
        f.insert(
            "cpu_percent".into(),
            Value::from((f64::from(s.global_cpu_usage()) * 100.0).round() / 100.0),
        );
        f.insert("load1".into(), Value::from(load.one));
        f.insert("load5".into(), Value::from(load.five));
        f.insert("load15".into(), Value::from(load.fifteen));
        f.insert(
            "memory_used_percent".into(),
            Value::from(percent(s.used_memory() as f64, s.total_memory() as f64)),
        );
        f.insert(
            "swap_used_percent".into(),
            Value::from(percent(s.used_swap() as f64, s.total_swap() as f64)),
        );
        let mut disks = Map::new();
        for d in Disks::new_with_refreshed_list().list() {
            let mount = d.mount_point();
            if config.mounts.as_ref().is_some_and(|m| !m.is_match(mount)) {
                continue;
            }
            if let Some(usage) = disk_usage(mount) {
                disks.insert(mount.to_string_lossy().into_owned(), usage);
            }
        }
        // Named ones whatever their file system (sysinfo lists only real disks).
        for mount in &config.named_mounts {
            if let Some(usage) = disk_usage(mount) {
                disks.insert(mount.to_string_lossy().into_owned(), usage);
            }
        }
        f.insert("disks".into(), Value::Object(disks));
        f
    }
}

/// `used_percent` as `df` computes it (used / (used + available to users)) and
/// `inodes_used_percent`, from statvfs.
fn disk_usage(mount: &Path) -> Option<Value> {
    let c = CString::new(mount.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    let avail = st.f_bavail as f64;
    let inodes_used = st.f_files.saturating_sub(st.f_ffree) as f64;
    let mut m = Map::new();
    m.insert(
        "used_percent".into(),
        Value::from(percent(used, used + avail)),
    );
    m.insert(
        "inodes_used_percent".into(),
        Value::from(percent(inodes_used, st.f_files as f64)),
    );
    Some(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_file_system_reports_its_usage() {
        let v = disk_usage(Path::new("/")).expect("statvfs /");
        let used = v["used_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&used), "{v}");
    }

    #[test]
    fn percent_of_nothing_is_zero() {
        assert_eq!(percent(5.0, 0.0), 0.0);
        assert_eq!(percent(1.0, 3.0), 33.33);
    }
}
