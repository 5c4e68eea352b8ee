// fail_syscall SYSCALL ERRNO PROGRAM [ARG...]: runs PROGRAM with every call of SYSCALL failing
// with ERRNO, by a seccomp filter the kernel applies (SECCOMP_RET_ERRNO): a real process meets
// a real failure it cannot otherwise be made to meet on demand (accept4 short of memory).
// The tests build it with cc; it changes nothing but the process it starts.
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "fail_syscall knows x86_64 and aarch64 only"
#endif

static const struct { const char *name; int nr; } syscalls[] = {
    {"accept4", SYS_accept4},
};
static const struct { const char *name; int value; } errnos[] = {
    {"ENOMEM", ENOMEM}, {"ENOBUFS", ENOBUFS},
};

int main(int argc, char **argv) {
    int nr = -1, err = -1;
    if (argc < 4) {
        fprintf(stderr, "usage: fail_syscall SYSCALL ERRNO PROGRAM [ARG...]\n");
        return 127;
    }
    for (size_t i = 0; i < sizeof syscalls / sizeof syscalls[0]; i++)
        if (strcmp(argv[1], syscalls[i].name) == 0) nr = syscalls[i].nr;
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (strcmp(argv[2], errnos[i].name) == 0) err = errnos[i].value;
    if (nr < 0 || err < 0) {
        fprintf(stderr, "fail_syscall: unknown system call %s or error %s\n", argv[1], argv[2]);
        return 127;
    }
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
        fprintf(stderr, "fail_syscall: cannot install a seccomp filter: %s\n", strerror(errno));
        return 126;
    }
    execv(argv[3], argv + 3);
    fprintf(stderr, "fail_syscall: cannot run %s: %s\n", argv[3], strerror(errno));
    return 127;
}
