#define _GNU_SOURCE
#include "cmyrixen.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <spawn.h>
#include <signal.h>
#include <sys/wait.h>

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

pid_t cmx_spawn_detached(const char *path, char *const argv[]) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
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

int cmx_die_with_parent(int sig, pid_t expected_parent) {
    if (prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0) return -1;
    if (expected_parent > 0 && getppid() != expected_parent) { errno = ESRCH; return -1; }
    return 0;
}
