// Thin wrappers for Linux calls that Swift's Glibc module does not import.
// No logic lives here: each function forwards to one system call.
#define _GNU_SOURCE
#include "CNotifyShim.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>
#include <errno.h>

const uint32_t notify_EPOLLIN = EPOLLIN;
const uint32_t notify_EPOLLOUT = EPOLLOUT;
const uint32_t notify_EPOLLERR = EPOLLERR;
const uint32_t notify_EPOLLHUP = EPOLLHUP;
const uint32_t notify_EPOLLRDHUP = EPOLLRDHUP;

const int notify_LOG_MAIL = LOG_MAIL;
const int notify_LOG_PID = LOG_PID;
const int notify_LOG_NDELAY = LOG_NDELAY;

int notify_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int notify_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    static const int ops[] = {EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL};
    if (op < 0 || op > 2) {
        errno = EINVAL;
        return -1;
    }
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, ops[op], fd, &ev);
}

int notify_epoll_wait(int epfd, notify_epoll_event *events, int max_events, int timeout_ms) {
    struct epoll_event raw[256];
    if (max_events > 256) max_events = 256;
    int n = epoll_wait(epfd, raw, max_events, timeout_ms);
    for (int i = 0; i < n; i++) {
        events[i].events = raw[i].events;
        events[i].data = raw[i].data.u64;
    }
    return n;
}

int notify_signalfd_for_shutdown(void) {
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0) return -1;
    return signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

int notify_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n == (ssize_t)sizeof info) return (int)info.ssi_signo;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
}

int notify_accept_nonblocking(int fd) {
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

long notify_peer_uid(int fd) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    return (long)cred.uid;
}

void notify_syslog(int priority, const char *message) {
    syslog(priority, "%s", message);
}

int notify_socket_nonblocking(int domain, int type) {
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

int notify_random_bytes(void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom((char *)buf + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}
