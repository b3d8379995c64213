// Thin wrappers for Linux interfaces that Swift's Glibc module does not import,
// or imports in a form Swift cannot call (variadic functions, macros, unions).
// Each wrapper returns what the underlying call returns and leaves errno set.
#ifndef C_NOTIFY_SHIM_H
#define C_NOTIFY_SHIM_H

#include <stdint.h>
#include <sys/types.h>

// epoll(7). Event masks are passed as plain integers.
extern const uint32_t notify_EPOLLIN;
extern const uint32_t notify_EPOLLOUT;
extern const uint32_t notify_EPOLLERR;
extern const uint32_t notify_EPOLLHUP;
extern const uint32_t notify_EPOLLRDHUP;

/// One ready descriptor as reported by notify_epoll_wait.
typedef struct {
    uint32_t events;
    uint64_t data;
} notify_epoll_event;

int notify_epoll_create(void);
/// op: 0 add, 1 modify, 2 delete.
int notify_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
int notify_epoll_wait(int epfd, notify_epoll_event *events, int max_events, int timeout_ms);

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and returns a non-blocking
/// close-on-exec signalfd that reports them; SIGPIPE is set to be ignored.
int notify_signalfd_for_shutdown(void);
/// Reads one pending signal from a signalfd; returns its number, 0 if none, -1 on error.
int notify_signalfd_read(int fd);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC.
int notify_accept_nonblocking(int fd);

/// The uid of the peer of a Unix stream socket (SO_PEERCRED), or -1.
long notify_peer_uid(int fd);

/// syslog(3) with a fixed "%s" format, so the message is never a format string.
void notify_syslog(int priority, const char *message);
extern const int notify_LOG_MAIL;
extern const int notify_LOG_PID;
extern const int notify_LOG_NDELAY;

/// Creates a socket with SOCK_NONBLOCK | SOCK_CLOEXEC.
int notify_socket_nonblocking(int domain, int type);

/// Fills buf with cryptographically random bytes via getrandom(2); returns 0 or -1.
int notify_random_bytes(void *buf, size_t len);

#endif
