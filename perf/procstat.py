"""What the perf scripts read of a process and the machine: a free port,
CPU seconds, open descriptors and /proc/PID/status figures. Imported by perf/run,
perf/session-scale and perf/daemon-vs-transmission."""
import os
import socket


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User plus system CPU seconds of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def status(pid, key):
    """A kB figure of /proc/PID/status (VmHWM, VmRSS ...), 0 if missing."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))
