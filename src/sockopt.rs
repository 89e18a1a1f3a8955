//! Integer TCP socket options that `socket2` does not wrap.

use std::os::fd::AsRawFd;

/// Sets TCP-level option `option` (`libc::TCP_*`) of socket `fd` to `value`.
pub(crate) fn set_tcp_int(
    fd: &impl AsRawFd,
    option: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: `fd` is an open socket for the duration of the call, and the
    // option value is a live c_int of the length passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            option,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
