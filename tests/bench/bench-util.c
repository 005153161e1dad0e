/* bench-util.c: buffers, temporary directories, loopback sockets, token files and file-system names
 * for entropy-bench. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "bench-util.h"

int buf_reserve(Buf *b, size_t extra) {
        size_t want = b->size + extra;
        size_t n;
        char *p;

        if (want <= b->alloc)
                return 0;
        n = MAX(b->alloc * 2, MAX(want, (size_t) 4096));
        p = realloc(b->data, n);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->alloc = n;
        return 0;
}

int buf_append(Buf *b, const void *data, size_t size) {
        int r = buf_reserve(b, size + 1);
        if (r < 0)
                return r;
        memcpy(b->data + b->size, data, size);
        b->size += size;
        b->data[b->size] = 0;
        return 0;
}

int buf_printf(Buf *b, const char *format, ...) {
        va_list ap;
        int n, r;

        r = buf_reserve(b, 256);
        if (r < 0)
                return r;
        for (;;) {
                size_t room = b->alloc - b->size;
                va_start(ap, format);
                n = vsnprintf(b->data + b->size, room, format, ap);
                va_end(ap);
                if (n < 0)
                        return -EINVAL;
                if ((size_t) n < room) {
                        b->size += (size_t) n;
                        return 0;
                }
                r = buf_reserve(b, (size_t) n + 1);
                if (r < 0)
                        return r;
        }
}

void buf_consume(Buf *b, size_t n) {
        if (n >= b->size) {
                b->size = 0;
                return;
        }
        memmove(b->data, b->data + n, b->size - n);
        b->size -= n;
}

void buf_free(Buf *b) {
        free(b->data);
        *b = (Buf){};
}

int make_temp_dir(const char *base, const char *prefix, char **ret) {
        char *p;

        if (isempty(base))
                base = getenv("TMPDIR");
        if (isempty(base))
                base = "/var/tmp";
        if (asprintf(&p, "%s/%s-XXXXXX", base, prefix) < 0)
                return -ENOMEM;
        if (!mkdtemp(p)) {
                int r = negative_errno();
                free(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        if (type == FTW_DP)
                return rmdir(path) < 0 ? -1 : 0;
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int rm_rf(const char *path) {
        if (access(path, F_OK) < 0)
                return errno == ENOENT ? 0 : negative_errno();
        if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
                return negative_errno();
        return 0;
}

int free_loopback_port(uint16_t *ret) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        _cleanup_close_ int fd = -EBADF;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return negative_errno();
        *ret = ntohs(sa.sin_port);
        return 0;
}

int connect_loopback(uint16_t port, bool nonblocking, int *ret_fd) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        _cleanup_close_ int fd = -EBADF;
        int one = 1;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
        if (fd < 0)
                return negative_errno();
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int write_token_file(const char *path, const char *token) {
        _cleanup_close_ int fd = -EBADF;
        size_t n = strlen(token);

        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return negative_errno();
        if (write(fd, token, n) != (ssize_t) n || write(fd, "\n", 1) != 1)
                return -EIO;
        return 0;
}

int random_token(char ret[static 33]) {
        uint8_t raw[16];

        if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw))
                return -EIO;
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(ret + 2 * i, 3, "%02x", raw[i]);
        return 0;
}

const char *fs_type_of(const char *path) {
        static const struct {
                long magic;
                const char *name;
        } names[] = {
                {EXT4_SUPER_MAGIC, "ext4"},         {TMPFS_MAGIC, "tmpfs"},
                {XFS_SUPER_MAGIC, "xfs"},           {BTRFS_SUPER_MAGIC, "btrfs"},
                {OVERLAYFS_SUPER_MAGIC, "overlay"}, {0x65735546, "fuse"},
        };
        _cleanup_free_ char *p = strdup(path);
        struct statfs s;

        /* A directory not created yet lives on its nearest existing parent's file system. */
        while (p && statfs(p, &s) < 0) {
                char *slash = strrchr(p, '/');
                if (errno != ENOENT || !slash || slash == p)
                        return "unknown";
                *slash = 0;
        }
        if (!p)
                return "unknown";
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if ((long) s.f_type == names[i].magic)
                        return names[i].name;
        return "unknown";
}

int self_directory(char **ret) {
        char buf[4096];
        ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        char *slash;

        if (n < 0)
                return negative_errno();
        buf[n] = 0;
        slash = strrchr(buf, '/');
        if (!slash)
                return -EINVAL;
        *slash = 0;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

int parse_loopback_url(const char *url, uint16_t *ret_port) {
        const char *p = url;
        char *end;
        unsigned long port;

        if (strncmp(p, "http://", 7) == 0)
                p += 7;
        if (strncmp(p, "127.0.0.1:", 10) == 0)
                p += 10;
        else if (strncmp(p, "localhost:", 10) == 0)
                p += 10;
        else
                return -EINVAL;
        errno = 0;
        port = strtoul(p, &end, 10);
        if (errno != 0 || end == p || port == 0 || port > 65535 || (*end && *end != '/'))
                return -EINVAL;
        *ret_port = (uint16_t) port;
        return 0;
}
