#define _GNU_SOURCE
#include "cmyrixen.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <spawn.h>
#include <signal.h>
#include <sys/wait.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <netinet/tcp.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/uio.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <netinet/udp.h>

extern char **environ;

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

int cmx_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
}

int cmx_seal_future_write(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

int cmx_seal_size(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
}

int cmx_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int cmx_seqpacket_socket(void) { return socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0); }

static int fill_addr(struct sockaddr_un *addr, const char *path) {
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof(addr->sun_path)) { errno = ENAMETOOLONG; return -1; }
    memcpy(addr->sun_path, path, n + 1);
    return 0;
}

int cmx_unix_listen(int fd, const char *path, int backlog) {
    struct sockaddr_un addr;
    if (fill_addr(&addr, path) < 0) return -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) return -1;
    return listen(fd, backlog);
}

int cmx_is_seqpacket_listener(int fd) {
    int v = 0;
    socklen_t n = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &n) < 0 || !v) return 0;
    n = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &n) < 0 || v != SOCK_SEQPACKET) return 0;
    n = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &n) < 0 || v != AF_UNIX) return 0;
    return 1;
}

int cmx_unix_connect(int fd, const char *path) {
    struct sockaddr_un addr;
    if (fill_addr(&addr, path) < 0) return -1;
    int rc;
    do { rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr)); } while (rc < 0 && errno == EINTR);
    return rc;
}

#define CMX_MAX_FDS 16

ssize_t cmx_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds, int dontwait) {
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    char control[CMSG_SPACE(sizeof(int) * CMX_MAX_FDS)];
    if (nfds > CMX_MAX_FDS) { errno = EINVAL; return -1; }
    if (nfds > 0) {
        memset(control, 0, sizeof(control));
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t rc;
    do { rc = sendmsg(sock, &msg, MSG_NOSIGNAL | (dontwait ? MSG_DONTWAIT : 0)); } while (rc < 0 && errno == EINTR);
    return rc;
}

ssize_t cmx_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds,
                          int *truncated, int dontwait) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    char control[CMSG_SPACE(sizeof(int) * CMX_MAX_FDS)];
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    *nfds = 0;
    *truncated = 0;
    ssize_t rc;
    do {
        rc = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | (dontwait ? MSG_DONTWAIT : 0));
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) return rc;
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) *truncated = 1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *in = (int *)CMSG_DATA(c);
            for (int i = 0; i < n; i++) {
                if (*nfds < maxfds) fds[(*nfds)++] = in[i];
                else { close(in[i]); *truncated = 1; }
            }
        }
    }
    return rc;
}

int cmx_peer_credentials(int sock, pid_t *pid, uid_t *uid) {
    struct ucred cred;
    socklen_t n = sizeof(cred);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &n) < 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    return 0;
}

int cmx_reopen_readonly(int fd) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return open(path, O_RDONLY | O_CLOEXEC);
}

ssize_t cmx_pull(pid_t pid, const struct iovec *local, unsigned long nlocal,
                 const struct iovec *remote, unsigned long nremote) {
    ssize_t rc;
    do { rc = process_vm_readv(pid, local, nlocal, remote, nremote, 0); } while (rc < 0 && errno == EINTR);
    return rc;
}

ssize_t cmx_push(pid_t pid, const struct iovec *local, unsigned long nlocal,
                 const struct iovec *remote, unsigned long nremote) {
    ssize_t rc;
    do { rc = process_vm_writev(pid, local, nlocal, remote, nremote, 0); } while (rc < 0 && errno == EINTR);
    return rc;
}

int cmx_allow_pull_from_any(void) {
#ifdef PR_SET_PTRACER
    return prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
#else
    return 0;
#endif
}

static void stdio_to_null(void) {
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) { dup2(fd, 0); dup2(fd, 1); dup2(fd, 2); if (fd > 2) close(fd); }
}

int cmx_daemonize(void) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid > 0) _exit(0);
    if (setsid() < 0) return -1;
    pid = fork();
    if (pid < 0) return -1;
    if (pid > 0) _exit(0);
    stdio_to_null();
    return 0;
}

void cmx_close_inherited(void) {
    if (syscall(SYS_close_range, 3, ~0U, 0) == 0) return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 ? max : 65536); fd++) close((int)fd);
}

pid_t cmx_spawn_detached(const char *path, char *const argv[]) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    /* Nothing else the caller holds may reach the daemon: a launcher (mpiexec, srun) waits for
       end-of-file on the pipes its ranks inherited. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigset_t dfl;
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) { errno = rc; return -1; }
    return pid;
}

pid_t cmx_spawn(const char *path, char *const argv[], char *const envp[]) {
    pid_t pid;
    int rc = posix_spawn(&pid, path, NULL, NULL, argv, envp ? envp : environ);
    if (rc != 0) { errno = rc; return -1; }
    return pid;
}

int cmx_wait(pid_t pid, int *status, int nohang) {
    int rc;
    do { rc = waitpid(pid, status, nohang ? WNOHANG : 0); } while (rc < 0 && errno == EINTR);
    return rc;
}

int cmx_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

int cmx_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int cmx_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cmx_epoll_watch(int ep, int fd, int op, int writable) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | (writable ? EPOLLOUT : 0);
    ev.data.fd = fd;
    int how = op == CMX_WATCH_ADD ? EPOLL_CTL_ADD : op == CMX_WATCH_MODIFY ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
    return epoll_ctl(ep, how, fd, &ev);
}

#define CMX_EPOLL_BATCH 256

int cmx_epoll_wait(int ep, int *fds, int *ready, int max, int timeout_ms) {
    struct epoll_event evs[CMX_EPOLL_BATCH];
    if (max > CMX_EPOLL_BATCH) max = CMX_EPOLL_BATCH;
    int n = epoll_wait(ep, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        fds[i] = evs[i].data.fd;
        ready[i] = ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) ? CMX_READY_IN : 0) |
                   ((evs[i].events & EPOLLOUT) ? CMX_READY_OUT : 0);
    }
    return n;
}

int cmx_die_with_parent(int sig, pid_t expected_parent) {
    if (prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0) return -1;
    if (expected_parent > 0 && getppid() != expected_parent) { errno = ESRCH; return -1; }
    return 0;
}

/* In a child just forked with every signal blocked: default handling of every signal, and
 * death with the parent (`death_signal`); -1 if the parent is already gone. */
static int child_tie(int death_signal, pid_t parent) {
    for (int sig = 1; sig < NSIG; sig++) if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0);
    return getppid() == parent ? 0 : -1;
}

pid_t cmx_spawn_rank(const char *path, char *const argv[], char *const envp[], const char *wdir,
                     int stdin_fd, int stdout_fd, int stderr_fd, int pmi_fd, int pmi_target,
                     pid_t pgid, const int *cpus, int ncpus, int death_signal, int *child_errno) {
    /* vfork, as posix_spawn does: the child borrows our memory until it execs, so starting a
     * rank costs no copy of the launcher's page tables (a fork of swiftrun took about a
     * millisecond). The child only makes system calls and writes `err` (shared) on failure.
     * Signals stay blocked across the vfork, so no handler of ours runs in the child while it
     * shares our memory; the child resets every handler before it unblocks. */
    volatile int err = 0;
    *child_errno = 0;
    pid_t parent = getpid();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = vfork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        setpgid(0, pgid);
        if (child_tie(death_signal, parent) != 0) { err = ESRCH; _exit(127); }
        if (stdin_fd >= 0 && stdin_fd != 0) dup2(stdin_fd, 0);
        if (stdout_fd >= 0 && stdout_fd != 1) dup2(stdout_fd, 1);
        if (stderr_fd >= 0 && stderr_fd != 2) dup2(stderr_fd, 2);
        if (pmi_fd >= 0 && pmi_fd != pmi_target) dup2(pmi_fd, pmi_target);
        /* Everything else (pipes of other ranks, sockets of the launcher) closes at exec. */
        syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
        if (pmi_fd >= 0) fcntl(pmi_target, F_SETFD, 0);
        if (wdir && chdir(wdir) < 0) { err = errno; _exit(127); }
        if (ncpus > 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            for (int i = 0; i < ncpus; i++) if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
            sched_setaffinity(0, sizeof set, &set);
        }
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvpe(path, argv, envp);
        err = errno ? errno : ENOEXEC;
        _exit(127);
    }
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) { errno = e; return -1; }
    if (err != 0) {
        int st;
        waitpid(pid, &st, 0);
        *child_errno = err;
        errno = err;
        return -1;
    }
    if (pgid == 0) setpgid(pid, pid); /* also from the parent: no race with the first signal */
    else setpgid(pid, pgid);
    return pid;
}

/* The area the kernel shows as /proc/PID/cmdline: the program's argument strings and, right
 * behind them, its environment strings (glibc hands both to constructors of the program). */
static char *args_start, *args_end;

__attribute__((constructor)) static void cmx_note_arguments(int argc, char **argv, char **envp) {
    if (argc < 1 || !argv || !argv[0]) return;
    char *end = argv[0] + strlen(argv[0]) + 1;
    for (int i = 1; i < argc; i++) {
        if (argv[i] != end) return; /* not laid out as the kernel does: leave it alone */
        end += strlen(argv[i]) + 1;
    }
    for (int i = 0; envp && envp[i]; i++) {
        if (envp[i] != end) break;
        end += strlen(envp[i]) + 1;
    }
    args_start = argv[0];
    args_end = end;
}

int cmx_set_process_title(const char *title) {
    if (!args_start) return -1;
    /* The environment strings move to the heap first: their room becomes the title's. */
    extern char **environ;
    for (int i = 0; environ && environ[i]; i++) {
        if (environ[i] >= args_start && environ[i] < args_end) {
            char *copy = strdup(environ[i]);
            if (!copy) return -1;
            environ[i] = copy;
        }
    }
    size_t room = (size_t)(args_end - args_start);
    size_t n = strlen(title);
    if (n >= room) n = room - 1;
    memcpy(args_start, title, n);
    memset(args_start + n, 0, room - n);
    return 0;
}

pid_t cmx_fork_tied(int death_signal, int fd, int target, const char *name) {
    /* Nothing buffered of ours may be written twice (the child ends with _exit). */
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        if (child_tie(death_signal, parent) != 0) _exit(1);
        if (name) prctl(PR_SET_NAME, name, 0, 0, 0);
        if (fd >= 0 && fd != target) {
            if (dup2(fd, target) < 0) _exit(1);
        } else if (fd >= 0) {
            fcntl(target, F_SETFD, 0);
        }
        /* Of the launcher's descriptors the child keeps stdio and `target` only. */
        int first = fd >= 0 ? target + 1 : 3;
        if (fd >= 0 && target > 3) syscall(SYS_close_range, 3, target - 1, 0);
        syscall(SYS_close_range, first, ~0U, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        return 0;
    }
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return pid;
}

static int signal_pipe_w = -1;
static volatile sig_atomic_t ending_signal = 0;

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT) ending_signal = sig;
    if (signal_pipe_w >= 0) (void)!write(signal_pipe_w, &b, 1);
    errno = saved;
}

int cmx_signal_pipe(void) {
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) return -1;
    signal_pipe_w = p[1];
    return p[0];
}

int cmx_ending_signal(void) { return ending_signal; }

int cmx_catch_signal(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

void cmx_default_signal(int sig) { signal(sig, SIG_DFL); }

int cmx_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
int cmx_stream_pair(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }

static int listen_on(in_addr_t address, int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(address);
    a.sin_port = 0;
    socklen_t n = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 256) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &n) < 0) { int e = errno; close(fd); errno = e; return -1; }
    *port = ntohs(a.sin_port);
    return fd;
}

int cmx_listen_loopback(int *port) { return listen_on(INADDR_LOOPBACK, port); }
int cmx_listen_any(int *port) { return listen_on(INADDR_ANY, port); }

int cmx_unix_stream_listen(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    mode_t old = umask(077);
    int rc = cmx_unix_listen(fd, path, 256);
    umask(old);
    if (rc < 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

int cmx_random(void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom((char *)buf + got, len - got, 0);
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        got += (size_t)n;
    }
    return 0;
}

int cmx_keepalive(int fd) {
    int on = 1, idle = 30, intvl = 10, cnt = 3;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0) return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    return 0;
}

int cmx_wait_peek(pid_t pid, int *status) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int rc;
    do { rc = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT); } while (rc < 0 && errno == EINTR);
    if (rc < 0 || si.si_pid != pid) return 0;
    if (si.si_code == CLD_EXITED) *status = (si.si_status & 0xff) << 8;
    else *status = si.si_status & 0x7f;
    return pid;
}

void cmx_raise_fd_limit(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

static void cmx_ipv4_to(struct sockaddr_in *a, uint32_t ip, uint16_t port) {
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(ip);
    a->sin_port = htons(port);
}

int cmx_udp_socket(uint32_t ip, uint16_t port, int buffer_bytes) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    // Root may go past the system's limits (SO_*BUFFORCE); others get what the limits allow.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer_bytes, sizeof buffer_bytes) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buffer_bytes, sizeof buffer_bytes) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
    struct sockaddr_in a;
    cmx_ipv4_to(&a, ip, port);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int cmx_udp_port(int fd) {
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &n) < 0) return -1;
    return ntohs(a.sin_port);
}

ssize_t cmx_udp_send(int fd, uint32_t ip, uint16_t port, const void *head, size_t head_len,
                     const void *body, size_t body_len) {
    struct iovec v[2] = {{(void *)head, head_len}, {(void *)body, body_len}};
    return cmx_udp_sendv(fd, ip, port, v, (body && body_len) ? 2 : 1, 0);
}

ssize_t cmx_udp_recv(int fd, void *buf, size_t cap, uint32_t *ip, uint16_t *port) {
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    ssize_t r;
    do { r = recvfrom(fd, buf, cap, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&a, &n); } while (r < 0 && errno == EINTR);
    if (r >= 0) {
        *ip = ntohl(a.sin_addr.s_addr);
        *port = ntohs(a.sin_port);
    }
    return r;
}

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

ssize_t cmx_udp_sendv(int fd, uint32_t ip, uint16_t port, const struct iovec *iov, int count, int segment) {
    struct sockaddr_in a;
    cmx_ipv4_to(&a, ip, port);
    union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } control;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_name = &a;
    m.msg_namelen = sizeof a;
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = count;
    if (segment > 0) {
        memset(&control, 0, sizeof control);
        m.msg_control = control.buf;
        m.msg_controllen = sizeof control.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = (uint16_t)segment;
        memcpy(CMSG_DATA(c), &size, sizeof size);
    }
    ssize_t n;
    do { n = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n;
}

int cmx_udp_sendmany(int fd, uint32_t ip, uint16_t port, const struct iovec *iov, const int *lengths, int count) {
    enum { most = 64 };
    struct sockaddr_in a;
    cmx_ipv4_to(&a, ip, port);
    struct mmsghdr m[most];
    if (count > most) count = most;
    memset(m, 0, sizeof(struct mmsghdr) * (size_t)count);
    const struct iovec *v = iov;
    for (int i = 0; i < count; i++) {
        m[i].msg_hdr.msg_name = &a;
        m[i].msg_hdr.msg_namelen = sizeof a;
        m[i].msg_hdr.msg_iov = (struct iovec *)v;
        m[i].msg_hdr.msg_iovlen = lengths[i];
        v += lengths[i];
    }
    int n;
    do { n = sendmmsg(fd, m, (unsigned)count, MSG_DONTWAIT | MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n;
}

int cmx_udp_enable_gro(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on);
}

ssize_t cmx_udp_recv_segments(int fd, void *buf, size_t cap, uint32_t *ip, uint16_t *port, int *segment) {
    struct sockaddr_in a;
    struct iovec v = {buf, cap};
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_name = &a;
    m.msg_namelen = sizeof a;
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    m.msg_control = control.buf;
    m.msg_controllen = sizeof control.buf;
    ssize_t r;
    do { r = recvmsg(fd, &m, MSG_DONTWAIT | MSG_TRUNC); } while (r < 0 && errno == EINTR);
    if (r < 0) return r;
    *ip = ntohl(a.sin_addr.s_addr);
    *port = ntohs(a.sin_port);
    *segment = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int size = 0;
            memcpy(&size, CMSG_DATA(c), sizeof size);
            if (size > 0 && size < r) *segment = size;
        }
    }
    return r;
}

/// The entry of `list` whose IPv4 address is `ip`, or NULL.
static const struct ifaddrs *cmx_interface_with(const struct ifaddrs *list, uint32_t ip) {
    for (const struct ifaddrs *i = list; i; i = i->ifa_next) {
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET
            && ntohl(((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr) == ip) return i;
    }
    return NULL;
}

int cmx_interface_mtu(uint32_t ip) {
    struct ifaddrs *list;
    int mtu = 0;
    if (getifaddrs(&list) < 0) return 0;
    const struct ifaddrs *i = cmx_interface_with(list, ip);
    int s = i ? socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) : -1;
    if (s >= 0) {
        struct ifreq r;
        memset(&r, 0, sizeof r);
        strncpy(r.ifr_name, i->ifa_name, IFNAMSIZ - 1);
        if (ioctl(s, SIOCGIFMTU, &r) == 0) mtu = r.ifr_mtu;
        close(s);
    }
    freeifaddrs(list);
    return mtu;
}

uint32_t cmx_first_ipv4(void) {
    struct ifaddrs *list, *i;
    uint32_t found = 0;
    if (getifaddrs(&list) < 0) return 0;
    for (i = list; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        if (!(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)) continue;
        found = ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
    }
    freeifaddrs(list);
    return found;
}

int cmx_socket_receive_buffer(int fd) {
    int n = 0;
    socklen_t len = sizeof n;
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, &len) < 0) return -1;
    return n;
}

uint32_t cmx_ipv4_netmask(uint32_t ip) {
    struct ifaddrs *list;
    uint32_t mask = 0;
    if (getifaddrs(&list) < 0) return 0;
    const struct ifaddrs *i = cmx_interface_with(list, ip);
    if (i && i->ifa_netmask) mask = ntohl(((const struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr);
    freeifaddrs(list);
    return mask;
}

uint32_t cmx_parse_ipv4(const char *s) {
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) return 0;
    return ntohl(a.s_addr);
}

int cmx_usable_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
    }
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}
