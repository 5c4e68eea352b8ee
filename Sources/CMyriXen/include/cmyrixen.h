// C shims for the MyriXen channel layer: the few things Swift cannot spell directly.
// Atomics are static inline so the compiler inlines them into the Swift fast path.
#ifndef CMYRIXEN_H
#define CMYRIXEN_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

// MARK: atomics over shared memory (acquire/release, as the rings need)
static inline uint64_t cmx_load_acquire_u64(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}
static inline uint64_t cmx_load_relaxed_u64(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}
static inline void cmx_store_release_u64(void *p, uint64_t v) {
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
}
static inline void cmx_store_relaxed_u64(void *p, uint64_t v) {
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
}
static inline uint64_t cmx_fetch_add_u64(void *p, uint64_t v) {
    return __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_RELAXED);
}
static inline uint32_t cmx_load_acquire_u32(const void *p) {
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}
static inline void cmx_store_release_u32(void *p, uint32_t v) {
    __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}
/// A full barrier: the store-then-load ordering the sleep/wake handshake needs.
static inline void cmx_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// MARK: descriptors and shared memory
/// memfd_create(2) with MFD_CLOEXEC | MFD_ALLOW_SEALING. Returns -1 and errno on failure.
int cmx_memfd_create(const char *name);
/// Adds F_SEAL_FUTURE_WRITE (plus shrink/grow seals): no new writable mapping can be made.
int cmx_seal_future_write(int fd);
/// eventfd(2), non-blocking and close-on-exec.
int cmx_eventfd(void);
/// socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC).
int cmx_seqpacket_socket(void);
/// bind+listen on a Unix path (length-checked). -1/errno on failure, ENAMETOOLONG if too long.
int cmx_unix_listen(int fd, const char *path, int backlog);
/* Whether fd is a listening Unix-domain seqpacket socket (one a launcher bound for us). */
int cmx_is_seqpacket_listener(int fd);
/// accept4 with SOCK_CLOEXEC.
int cmx_accept(int fd);
/// Sets O_NONBLOCK on a descriptor (a listener accepts until EAGAIN). 0 or -1/errno.
int cmx_set_nonblocking(int fd);

// MARK: the backend's event loop (epoll: a turn costs what is ready, not what is open)
#define CMX_WATCH_ADD 0
#define CMX_WATCH_MODIFY 1
#define CMX_WATCH_REMOVE 2
#define CMX_READY_IN 1
#define CMX_READY_OUT 2
/// epoll_create1(EPOLL_CLOEXEC).
int cmx_epoll_create(void);
/// Adds, modifies or removes (`op`: CMX_WATCH_*) `fd` in the epoll set `ep`: readable always,
/// writable too when `writable`. Level-triggered. 0 or -1/errno.
int cmx_epoll_watch(int ep, int fd, int op, int writable);
/// Waits up to `timeout_ms` for ready descriptors (at most `max`, at most 256): fills `fds` and
/// `ready` (CMX_READY_IN for input, hang-up or error; CMX_READY_OUT for room to write).
/// Returns their number, 0 on timeout, -1/errno (EINTR included: the caller checks its flags).
int cmx_epoll_wait(int ep, int *fds, int *ready, int max, int timeout_ms);
/// connect to a Unix path.
int cmx_unix_connect(int fd, const char *path);
/// sendmsg with up to `nfds` descriptors as SCM_RIGHTS. MSG_NOSIGNAL (and MSG_DONTWAIT if asked).
ssize_t cmx_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds, int dontwait);
/// Seals an object's size (F_SEAL_SHRINK | F_SEAL_GROW): nobody holding it can truncate it
/// under another's mapping.
int cmx_seal_size(int fd);
/// recvmsg accepting up to `maxfds` descriptors (received with O_CLOEXEC). *nfds gets the count;
/// *truncated is set when the message or its control data was cut.
ssize_t cmx_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds,
                          int *truncated, int dontwait);
/// SO_PEERCRED of a connected Unix socket.
int cmx_peer_credentials(int sock, pid_t *pid, uid_t *uid);
/// Re-opens a descriptor read-only through /proc/self/fd (for read-only grants).
int cmx_reopen_readonly(int fd);

// MARK: the emulated NIC's DMA engine (cross-memory attach)
/// process_vm_readv(2): copies from `pid`'s memory into ours, one copy, no bounce buffer.
ssize_t cmx_pull(pid_t pid, const struct iovec *local, unsigned long nlocal,
                 const struct iovec *remote, unsigned long nremote);
/// process_vm_writev(2): copies from our memory into `pid`'s (a split message's sender half).
ssize_t cmx_push(pid_t pid, const struct iovec *local, unsigned long nlocal,
                 const struct iovec *remote, unsigned long nremote);
/// Lets any process of our uid read and write our memory with cross-memory attach (Yama
/// ptrace_scope 1).
int cmx_allow_pull_from_any(void);

// MARK: processes
/// Detaches into the background: fork, setsid, fork again. Returns 0 in the daemon, exits the
/// intermediate processes; -1/errno on failure. stdin/stdout/stderr go to /dev/null.
int cmx_daemonize(void);
/// Closes every descriptor above 2 (close_range): what a daemon does first, so that it keeps
/// nothing of the process that started it.
void cmx_close_inherited(void);
/// Spawns `argv[0]`-named executable `path` with stdio on /dev/null and no other descriptor of
/// the caller, in its own session. Returns the pid or -1/errno.
pid_t cmx_spawn_detached(const char *path, char *const argv[]);
/// posix_spawn of `path` with `argv`, inheriting stdio and environment (plus `envp` if non-null).
pid_t cmx_spawn(const char *path, char *const argv[], char *const envp[]);
/// Starts one rank of a job: fork, then in the child: join process group `pgid` (0: a new one
/// led by the child), die with the parent (PR_SET_PDEATHSIG `death_signal`), default signal
/// handling, stdio from the given descriptors, the PMI descriptor at `pmi_target` (if
/// `pmi_fd` >= 0), every other descriptor closed at exec, `wdir`, CPU affinity to `cpus`,
/// then execvpe. Returns the pid; on failure -1 with *child_errno set to why the child could
/// not start (chdir or exec), or errno for fork.
pid_t cmx_spawn_rank(const char *path, char *const argv[], char *const envp[], const char *wdir,
                     int stdin_fd, int stdout_fd, int stderr_fd, int pmi_fd, int pmi_target,
                     pid_t pgid, const int *cpus, int ncpus, int death_signal, int *child_errno);
/// Forks a child that keeps running this program: it dies with the parent (PR_SET_PDEATHSIG
/// `death_signal`, and ends at once if the parent is already gone), has default signal
/// handling with nothing blocked, the name `name` (if non-null), `fd` as `target` (if `fd` >=
/// 0) and no other descriptor but stdio. Returns 0 in the child, the pid in the parent, -1/errno.
pid_t cmx_fork_tied(int death_signal, int fd, int target, const char *name);
/// Shows `title` as this process's command line (/proc/PID/cmdline, ps), in the room of its
/// arguments and environment strings (which move to the heap), cut to fit. 0, or -1.
int cmx_set_process_title(const char *title);
/// pipe2(O_CLOEXEC).
int cmx_pipe(int fds[2]);
/// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC).
int cmx_stream_pair(int fds[2]);
/// A TCP socket listening on 127.0.0.1 with a port the kernel picks; *port gets it.
int cmx_listen_loopback(int *port);
/// A TCP socket listening on every address with a port the kernel picks; *port gets it.
int cmx_listen_any(int *port);
/// A Unix SOCK_STREAM socket listening at `path` (mode 0600, close-on-exec).
int cmx_unix_stream_listen(const char *path);
/// Fills `buf` from the kernel's random generator (getrandom); 0 or -1/errno.
int cmx_random(void *buf, size_t len);
/// TCP keepalive that notices a dead peer within about a minute.
int cmx_keepalive(int fd);
/// Whether `pid` has ended, without reaping it (waitid WNOWAIT): it stays a zombie, so its
/// process-group id cannot be reused. Returns pid and the wait status when it has ended, else 0.
int cmx_wait_peek(pid_t pid, int *status);
/// Raises the soft limit on open descriptors to the hard limit.
void cmx_raise_fd_limit(void);
/// A self-pipe for signals: the handler writes the signal number; returns the read end.
int cmx_signal_pipe(void);
/// The last SIGINT, SIGTERM, SIGHUP or SIGQUIT the signal pipe's handler caught (0: none yet).
int cmx_ending_signal(void);

/* CPUs this process may run on (its affinity mask; at least 1). */
int cmx_usable_cpus(void);
/// Routes `sig` to the signal pipe (SA_RESTART).
int cmx_catch_signal(int sig);
/// Restores the default disposition of `sig`.
void cmx_default_signal(int sig);

/// Asks the kernel to send `sig` to us when our parent dies (PR_SET_PDEATHSIG); returns -1 if
/// the parent is already gone (our parent pid is no longer `expected_parent`).
int cmx_die_with_parent(int sig, pid_t expected_parent);
/// waitpid; returns the raw status, or -1/errno. `nohang` returns 0 while the child runs.
int cmx_wait(pid_t pid, int *status, int nohang);
static inline int cmx_exited(int status) { return (status & 0x7f) == 0; }
static inline int cmx_exit_code(int status) { return (status >> 8) & 0xff; }
static inline int cmx_term_signal(int status) { return status & 0x7f; }

// The emulated wire: UDP datagrams between hosts. Addresses are IPv4 in host byte order.
/// A non-blocking UDP socket bound to ip:port (port 0: any), with big socket buffers.
/// Returns the descriptor or -1/errno.
int cmx_udp_socket(uint32_t ip, uint16_t port, int buffer_bytes);
/// The port a UDP socket is bound to, or -1.
int cmx_udp_port(int fd);
/// The receive buffer the kernel gives a socket (SO_RCVBUF as read back), or -1.
int cmx_socket_receive_buffer(int fd);
/// Sends one datagram made of `head` then `body` (body may be NULL) without blocking.
/// Returns bytes sent or -1/errno (EAGAIN when the socket buffer is full).
ssize_t cmx_udp_send(int fd, uint32_t ip, uint16_t port, const void *head, size_t head_len,
                     const void *body, size_t body_len);
/// Receives one datagram without blocking; fills the sender's address. -1/errno when none.
ssize_t cmx_udp_recv(int fd, void *buf, size_t cap, uint32_t *ip, uint16_t *port);
/// Sends the `count` iovecs as one datagram; with `segment` > 0, as datagrams of `segment` bytes
/// each (the last may be shorter) in one system call, cut by the kernel (UDP_SEGMENT).
/// Returns bytes sent or -1/errno (EAGAIN/ENOBUFS when the socket buffer is full).
ssize_t cmx_udp_sendv(int fd, uint32_t ip, uint16_t port, const struct iovec *iov, int count, int segment);
/// Sends `count` datagrams in one system call (sendmmsg): datagram i is the next `lengths[i]`
/// iovecs of `iov`. Returns how many datagrams went (the first ones), or -1/errno.
int cmx_udp_sendmany(int fd, uint32_t ip, uint16_t port, const struct iovec *iov, const int *lengths, int count);
/// Asks for coalesced receives (UDP_GRO): a run of datagrams of one sender may arrive as one.
/// 0, or -1/errno where the kernel cannot.
int cmx_udp_enable_gro(int fd);
/// Receives one datagram without blocking, or a coalesced run of them: then `*segment` is the
/// size of each (the last may be shorter), else 0. Fills the sender's address. -1/errno when none.
ssize_t cmx_udp_recv_segments(int fd, void *buf, size_t cap, uint32_t *ip, uint16_t *port, int *segment);
/// The MTU of the interface that has `ip`, or 0 when no interface has it.
int cmx_interface_mtu(uint32_t ip);
/// The first IPv4 address of an interface that is up and not loopback, or 0 when none.
uint32_t cmx_first_ipv4(void);
/// The netmask of the interface that has `ip`, or 0 when no interface has it.
uint32_t cmx_ipv4_netmask(uint32_t ip);
/// Parses a dotted IPv4 address; 0 when it is not one.
uint32_t cmx_parse_ipv4(const char *s);

#endif
