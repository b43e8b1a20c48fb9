//! The step's seccomp filter, compiled with `seccompiler` in the parent
//! (before `fork`) and installed by the command process just before
//! `execve`, after `PR_SET_NO_NEW_PRIVS`.
//!
//! Effect, as the container engines' default profile (moby's
//! `default.json`) has it for a container without `CAP_SYS_ADMIN`,
//! `CAP_SYS_MODULE`, `CAP_SYS_TIME`, `CAP_SYS_BOOT`, ...: every other
//! syscall is allowed, these fail with `EPERM`:
//!
//! * kernel keyrings (`keyctl`, `add_key`, `request_key`), `bpf`,
//!   `perf_event_open`, `userfaultfd`, `io_uring_*`, `lookup_dcookie`,
//!   `fanotify_init`;
//! * mounting: `mount`, `umount2`, `pivot_root`, the new mount API
//!   (`fsopen`, `fsconfig`, `fsmount`, `fspick`, `move_mount`, `open_tree`,
//!   `mount_setattr`), `name_to_handle_at`, `open_by_handle_at`;
//! * namespaces: `setns`; `unshare` and `clone` with any `CLONE_NEW*` flag;
//!   `clone3` fails with `ENOSYS` so that glibc falls back to `clone`;
//! * modules, kexec, reboot, swap, `acct`, `quotactl`, `syslog`, `iopl`,
//!   `ioperm`, clock setting (`settimeofday`, `clock_settime`, `adjtimex`,
//!   `clock_adjtime`), NUMA policy changes, `vhangup`, `uselib`,
//!   `_sysctl`, `nfsservctl`.
//!
//! On x86_64 the same numbers with the x32 bit are denied too, and a
//! syscall from another architecture (i386 `int 0x80`) kills the process,
//! so the filter cannot be bypassed through a second syscall table.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The compiled filters, installed in order.
#[derive(Debug, Clone)]
pub(crate) struct Filters {
    pub(crate) programs: Vec<BpfProgram>,
}

/// Every `CLONE_NEW*` flag that `clone`'s flags argument can carry.
const CLONE_NEW_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];
/// `unshare` also takes `CLONE_NEWTIME`.
const CLONE_NEWTIME: u64 = 0x80;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

#[cfg(target_arch = "x86_64")]
const ARCH_ONLY: &[libc::c_long] = &[
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_uselib,
    libc::SYS__sysctl,
    libc::SYS_nfsservctl,
];
#[cfg(target_arch = "aarch64")]
const ARCH_ONLY: &[libc::c_long] = &[];

/// Denied unconditionally (`EPERM`).
const DENIED: &[libc::c_long] = &[
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_lookup_dcookie,
    libc::SYS_fanotify_init,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_setns,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_adjtimex,
    libc::SYS_clock_adjtime,
    libc::SYS_mbind,
    libc::SYS_set_mempolicy,
    libc::SYS_migrate_pages,
    libc::SYS_move_pages,
    libc::SYS_vhangup,
];

/// x86_64's x32 ABI: the same table with bit 30 set.
#[cfg(target_arch = "x86_64")]
const X32_BIT: i64 = 0x4000_0000;
/// x32-only numbers of denied syscalls (`compat_sys_kexec_load`).
#[cfg(target_arch = "x86_64")]
const X32_ONLY: &[i64] = &[X32_BIT + 528];

fn numbers(nr: libc::c_long) -> Vec<i64> {
    #[cfg(target_arch = "x86_64")]
    {
        vec![nr, nr | X32_BIT]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        vec![nr]
    }
}

fn flag_rules(flags: &[u64]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    flags
        .iter()
        .map(|&f| {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(f),
                f,
            )?])
        })
        .collect()
}

/// Compiles the filters (see the module docs).
pub(crate) fn compile() -> Result<Filters, seccompiler::Error> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED.iter().chain(ARCH_ONLY) {
        for n in numbers(nr) {
            deny.insert(n, Vec::new());
        }
    }
    #[cfg(target_arch = "x86_64")]
    for &n in X32_ONLY {
        deny.insert(n, Vec::new());
    }
    let mut unshare_flags = CLONE_NEW_FLAGS.to_vec();
    unshare_flags.push(CLONE_NEWTIME);
    for n in numbers(libc::SYS_unshare) {
        deny.insert(n, flag_rules(&unshare_flags)?);
    }
    for n in numbers(libc::SYS_clone) {
        deny.insert(n, flag_rules(&CLONE_NEW_FLAGS)?);
    }
    let eperm = SeccompFilter::new(
        deny,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )?;
    let mut nosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for n in numbers(libc::SYS_clone3) {
        nosys.insert(n, Vec::new());
    }
    let enosys = SeccompFilter::new(
        nosys,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )?;
    Ok(Filters {
        programs: vec![eperm.try_into()?, enosys.try_into()?],
    })
}

impl Filters {
    /// Sets `PR_SET_NO_NEW_PRIVS` and installs the filters. Allocation-free
    /// (safe between `fork` and `exec`); returns the errno on failure.
    pub(crate) fn apply(&self) -> Result<(), i32> {
        for p in &self.programs {
            seccompiler::apply_filter(p).map_err(|e| match e {
                seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => {
                    e.raw_os_error().unwrap_or(libc::EINVAL)
                }
                _ => libc::EINVAL,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_compile() {
        let f = super::compile().unwrap();
        assert_eq!(f.programs.len(), 2);
        assert!(f.programs[0].len() > 50);
    }
}
