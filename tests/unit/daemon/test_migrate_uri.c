/*
 * Migration URIs (daemon/migrate_uri.c): every form QEMU spells parses
 * into its parts and every other one is refused with a message naming
 * the URI; the two ends meet over real unix and tcp (IPv4 and IPv6
 * loopback) sockets, port 0 picks a free port that bound reports, and
 * file: writes and reads at its offset. The named-descriptor registry
 * keeps, replaces, takes and closes what getfd hands it.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate_uri.h"

static char tmpdir[] = "/tmp/mig-uri-XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* ---- parsing ----------------------------------------------------------- */

static void test_migrate_uri_unix_parses_path(void **state)
{
	struct mig_uri u;
	char err[256];

	(void)state;
	assert_int_equal(
		mig_uri_parse("unix:/run/x.sock", &u, err, sizeof(err)), 0);
	assert_int_equal(u.kind, MIG_URI_UNIX);
	assert_string_equal(u.path, "/run/x.sock");
	mig_uri_free(&u);
}

static void test_migrate_uri_tcp_forms_parse(void **state)
{
	static const char *const in[][3] = {
		{ "tcp:127.0.0.1:4444", "127.0.0.1", "4444" },
		{ "tcp:localhost:0", "localhost", "0" },
		{ "tcp:[::1]:65535", "::1", "65535" },
		{ "tcp:[fe80::1%lo]:1", "fe80::1%lo", "1" },
		{ "tcp::4444", "", "4444" },
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		struct mig_uri u;

		assert_int_equal(mig_uri_parse(in[i][0], &u, err, sizeof(err)),
				 0);
		assert_int_equal(u.kind, MIG_URI_TCP);
		assert_string_equal(u.host, in[i][1]);
		assert_string_equal(u.port, in[i][2]);
		mig_uri_free(&u);
	}
}

static void test_migrate_uri_fd_and_file_parse(void **state)
{
	struct mig_uri u;
	char err[256];

	(void)state;
	assert_int_equal(mig_uri_parse("fd:migrate", &u, err, sizeof(err)), 0);
	assert_int_equal(u.kind, MIG_URI_FD);
	assert_string_equal(u.fdname, "migrate");
	mig_uri_free(&u);

	assert_int_equal(mig_uri_parse("file:/tmp/a", &u, err, sizeof(err)), 0);
	assert_int_equal(u.kind, MIG_URI_FILE);
	assert_string_equal(u.path, "/tmp/a");
	assert_int_equal(u.offset, 0);
	mig_uri_free(&u);

	assert_int_equal(mig_uri_parse("file:/tmp/a,b,offset=4096", &u, err,
				       sizeof(err)),
			 0);
	assert_string_equal(u.path, "/tmp/a,b");
	assert_int_equal(u.offset, 4096);
	mig_uri_free(&u);

	assert_int_equal(mig_uri_parse("file:/x,offset=1,offset=0x10", &u, err,
				       sizeof(err)),
			 0);
	assert_string_equal(u.path, "/x,offset=1");
	assert_int_equal(u.offset, 16);
	mig_uri_free(&u);
}

/* Each refusal names the URI and says what was wrong; u is untouched. */
static void test_migrate_uri_bad_forms_refused_naming_uri(void **state)
{
	static const char *const bad[][2] = {
		{ "", "empty" },
		{ "nocolon", "expected TRANSPORT:ADDRESS" },
		{ "exec:cat > /tmp/x", "unknown transport 'exec'" },
		{ "rdma:1.2.3.4:5", "unknown transport 'rdma'" },
		{ "UNIX:/x", "unknown transport 'UNIX'" },
		{ "unix:", "empty path" },
		{ "unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "at most 107 bytes" },
		{ "tcp:host", "expected tcp:HOST:PORT" },
		{ "tcp:host:", "port '' is not" },
		{ "tcp:host:65536", "port '65536'" },
		{ "tcp:host:-1", "port '-1'" },
		{ "tcp:host:http", "port 'http'" },
		{ "tcp:host:1,ipv4", "port '1,ipv4'" },
		{ "tcp:::1:4444", "in brackets" },
		{ "tcp:[::1:4444", "expected tcp:[IPV6]:PORT" },
		{ "tcp:[::1]4444", "expected tcp:[IPV6]:PORT" },
		{ "tcp:[]:4444", "empty IPv6" },
		{ "fd:", "descriptor name" },
		{ "file:", "empty path" },
		{ "file:,offset=5", "empty path" },
		{ "file:/x,offset=", "offset '' is not" },
		{ "file:/x,offset=12k", "offset '12k'" },
		{ "file:/x,offset=0x", "offset '0x'" },
		{ "file:/x,offset=99999999999999999999", "offset '9999" },
		{ "file:/x,offset=0x8000000000000000", "offset '0x8" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mig_uri u;
		char err[256] = "";
		char want[200];

		memset(&u, 0x5a, sizeof(u));
		if (mig_uri_parse(bad[i][0], &u, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i][0]);
		snprintf(want, sizeof(want), "'%.60s", bad[i][0]);
		if (!strstr(err, want) || !strstr(err, bad[i][1]))
			fail_msg("'%s': message '%s' lacks '%s' or '%s'",
				 bad[i][0], err, want, bad[i][1]);
		assert_int_equal(u.kind, 0x5a5a5a5a);
	}
}

/* ---- named descriptors ------------------------------------------------- */

static void test_migrate_uri_fds_put_take_close_replace(void **state)
{
	struct mig_fds *f = mig_fds_new();
	int p[2], q[2];

	(void)state;
	assert_non_null(f);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	assert_int_equal(mig_fds_put(f, "a", p[0]), 0);
	/* Same name again: the old descriptor is closed, the new kept. */
	assert_int_equal(mig_fds_put(f, "a", q[0]), 0);
	assert_false(fd_is_open(p[0]));
	assert_int_equal(mig_fds_take(f, "a"), q[0]);
	assert_true(fd_is_open(q[0]));
	assert_int_equal(mig_fds_take(f, "a"), -ENOENT);
	assert_int_equal(mig_fds_close(f, "a"), -ENOENT);

	assert_int_equal(mig_fds_put(f, "b", q[0]), 0);
	assert_int_equal(mig_fds_close(f, "b"), 0);
	assert_false(fd_is_open(q[0]));

	/* What is still held is closed with the registry. */
	assert_int_equal(mig_fds_put(f, "c", p[1]), 0);
	mig_fds_free(f);
	assert_false(fd_is_open(p[1]));
	close(q[1]);
}

static void test_migrate_uri_fds_full_refuses_and_closes(void **state)
{
	struct mig_fds *f = mig_fds_new();
	char name[16];
	int fd;

	(void)state;
	for (int i = 0; i < MIG_FDS_MAX; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		assert_int_equal(mig_fds_put(f, name, dup(0)), 0);
	}
	fd = dup(0);
	assert_int_equal(mig_fds_put(f, "one-more", fd), -ENOSPC);
	assert_false(fd_is_open(fd));
	/* Replacing a held name still works when full. */
	assert_int_equal(mig_fds_put(f, "n0", dup(0)), 0);
	mig_fds_free(f);
}

/* ---- the two ends ------------------------------------------------------ */

static int accept_one(int lfd)
{
	int c;

	for (int i = 0; i < 500; i++) {
		c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return c;
		usleep(2000);
	}
	return -1;
}

/* Listen on in, connect to what bound says (or to in), and pass bytes
 * both ways. Returns bound. */
static void round_trip(const char *in, const char *connect_to,
		       const char *bound_prefix)
{
	struct mig_uri lu, cu;
	char err[256], bound[256];
	int lfd, dfd, cfd, sfd;
	char buf[8];

	if (mig_uri_parse(in, &lu, err, sizeof(err)))
		fail_msg("parse %s: %s", in, err);
	if (mig_uri_listen(&lu, -1, &lfd, &dfd, bound, sizeof(bound), err,
			   sizeof(err)))
		fail_msg("listen %s: %s", in, err);
	assert_int_equal(dfd, -1);
	assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
	if (strncmp(bound, bound_prefix, strlen(bound_prefix)))
		fail_msg("listen %s: bound '%s', expected '%s...'", in, bound,
			 bound_prefix);
	if (mig_uri_parse(connect_to ? connect_to : bound, &cu, err,
			  sizeof(err)))
		fail_msg("parse %s: %s", bound, err);
	cfd = mig_uri_connect(&cu, -1, err, sizeof(err));
	if (cfd < 0)
		fail_msg("connect %s: %s", bound, err);
	assert_false(fcntl(cfd, F_GETFL) & O_NONBLOCK);
	sfd = accept_one(lfd);
	assert_true(sfd >= 0);
	assert_int_equal(write(cfd, "ping", 4), 4);
	assert_int_equal(read(sfd, buf, 4), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(write(sfd, "pong", 4), 4);
	assert_int_equal(read(cfd, buf, 4), 4);
	assert_memory_equal(buf, "pong", 4);
	close(sfd);
	close(cfd);
	close(lfd);
	mig_uri_free(&lu);
	mig_uri_free(&cu);
}

static void test_migrate_uri_unix_round_trip_and_stale_replaced(void **state)
{
	char uri[160], path[64];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/m.sock", tmpdir);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	/* A stale socket file (bound, nobody listening) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	round_trip(uri, NULL, uri);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
}

static void test_migrate_uri_unix_live_or_other_file_refused(void **state)
{
	struct mig_uri u;
	char uri[160], path[64], err[256], bound[256];
	int lfd, dfd, lfd2;

	(void)state;
	snprintf(path, sizeof(path), "%s/live.sock", tmpdir);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	assert_int_equal(mig_uri_parse(uri, &u, err, sizeof(err)), 0);
	assert_int_equal(mig_uri_listen(&u, -1, &lfd, &dfd, bound,
					sizeof(bound), err, sizeof(err)),
			 0);
	assert_int_equal(mig_uri_listen(&u, -1, &lfd2, &dfd, bound,
					sizeof(bound), err, sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, path));
	assert_int_equal(lfd2, -1);
	close(lfd);
	mig_uri_free(&u);

	snprintf(path, sizeof(path), "%s/plain", tmpdir);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(mig_uri_parse(uri, &u, err, sizeof(err)), 0);
	assert_int_equal(mig_uri_listen(&u, -1, &lfd, &dfd, bound,
					sizeof(bound), err, sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(access(path, F_OK), 0);
	mig_uri_free(&u);
}

static void test_migrate_uri_tcp4_port0_round_trip(void **state)
{
	(void)state;
	round_trip("tcp:127.0.0.1:0", NULL, "tcp:127.0.0.1:");
}

static void test_migrate_uri_tcp6_port0_round_trip(void **state)
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0);

	(void)state;
	if (fd < 0) {
		print_message("no IPv6 here: %s\n", strerror(errno));
		skip();
	}
	close(fd);
	round_trip("tcp:[::1]:0", NULL, "tcp:[::1]:");
}

static void test_migrate_uri_tcp_name_and_fixed_port(void **state)
{
	struct mig_uri u;
	char err[256], bound[256], uri[64];
	int lfd, dfd, port;

	(void)state;
	/* Find a free port, then listen on it by name. */
	assert_int_equal(mig_uri_parse("tcp:127.0.0.1:0", &u, err, sizeof(err)),
			 0);
	assert_int_equal(mig_uri_listen(&u, -1, &lfd, &dfd, bound,
					sizeof(bound), err, sizeof(err)),
			 0);
	port = atoi(strrchr(bound, ':') + 1);
	assert_true(port > 0);
	close(lfd);
	mig_uri_free(&u);
	/* SO_REUSEADDR: the port is free again at once. */
	snprintf(uri, sizeof(uri), "tcp:localhost:%d", port);
	snprintf(bound, sizeof(bound), "tcp:127.0.0.1:%d", port);
	round_trip(uri, bound, "tcp:");
}

static void test_migrate_uri_connect_failures_name_uri(void **state)
{
	static const char *const bad[][2] = {
		{ "unix:/nonexistent/dir/s", "connect to unix:/nonexistent" },
		{ "tcp:127.0.0.1:0", "port 0 is for the incoming side" },
		{ "tcp::4444", "no host" },
		{ "tcp:no-such-host.invalid:1", "resolve tcp:no-such-host" },
		{ "file:/nonexistent/dir/f", "open file:/nonexistent" },
		{ "fd:nothing", "fd:nothing" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mig_uri u;
		char err[256] = "";

		assert_int_equal(mig_uri_parse(bad[i][0], &u, err, sizeof(err)),
				 0);
		if (mig_uri_connect(&u, -1, err, sizeof(err)) >= 0)
			fail_msg("connect %s succeeded", bad[i][0]);
		if (!strstr(err, bad[i][1]))
			fail_msg("connect %s: '%s' lacks '%s'", bad[i][0], err,
				 bad[i][1]);
		mig_uri_free(&u);
	}
}

static void test_migrate_uri_file_offset_write_then_read(void **state)
{
	struct mig_uri u;
	char uri[160], path[64], err[256], bound[16], buf[16];
	struct stat st;
	int fd, lfd, dfd;

	(void)state;
	snprintf(path, sizeof(path), "%s/save", tmpdir);
	/* An existing longer file is truncated. */
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	assert_int_equal(write(fd, "0123456789abcdefghij", 20), 20);
	close(fd);
	snprintf(uri, sizeof(uri), "file:%s,offset=0x8", path);
	assert_int_equal(mig_uri_parse(uri, &u, err, sizeof(err)), 0);
	fd = mig_uri_connect(&u, -1, err, sizeof(err));
	if (fd < 0)
		fail_msg("%s", err);
	assert_int_equal(write(fd, "STREAM", 6), 6);
	close(fd);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 14);

	assert_int_equal(mig_uri_listen(&u, -1, &lfd, &dfd, bound,
					sizeof(bound), err, sizeof(err)),
			 0);
	assert_int_equal(lfd, -1);
	assert_string_equal(bound, "");
	assert_int_equal(read(dfd, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "STREAM", 6);
	close(dfd);
	mig_uri_free(&u);

	/* A new file is created 0600. */
	snprintf(path, sizeof(path), "%s/new", tmpdir);
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(mig_uri_parse(uri, &u, err, sizeof(err)), 0);
	fd = mig_uri_connect(&u, -1, err, sizeof(err));
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	mig_uri_free(&u);
}

static void test_migrate_uri_file_symlink_refused(void **state)
{
	struct mig_uri u;
	char uri[160], path[64], target[128], err[256];

	(void)state;
	snprintf(target, sizeof(target), "%s/target", tmpdir);
	snprintf(path, sizeof(path), "%s/link", tmpdir);
	assert_int_equal(symlink(target, path), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(mig_uri_parse(uri, &u, err, sizeof(err)), 0);
	assert_int_equal(mig_uri_connect(&u, -1, err, sizeof(err)), -ELOOP);
	assert_non_null(strstr(err, "symbolic link"));
	assert_int_equal(access(target, F_OK), -1);
	mig_uri_free(&u);
}

static void test_migrate_uri_file_incoming_missing_refused(void **state)
{
	struct mig_uri u;
	char err[256], bound[16];
	int lfd, dfd;

	(void)state;
	assert_int_equal(
		mig_uri_parse("file:/nonexistent/x", &u, err, sizeof(err)), 0);
	assert_int_equal(mig_uri_listen(&u, -1, &lfd, &dfd, bound,
					sizeof(bound), err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "file:/nonexistent/x"));
	assert_int_equal(lfd, -1);
	assert_int_equal(dfd, -1);
	mig_uri_free(&u);
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Connects to a listener that never accepts (backlog 0) until its queue
 * is full: that connect gives up after the URI's timeout, -ETIMEDOUT
 * named in err, instead of waiting for the peer without end.
 */
static void connect_until_timeout(const char *uri)
{
	struct mig_uri u;
	char err[256] = "";
	int fds[8], n, r = 0;
	uint64_t t0 = 0, took = 0;

	assert_int_equal(mig_uri_parse(uri, &u, err, sizeof(err)), 0);
	u.connect_timeout_ms = 200;
	for (n = 0; n < 8; n++) {
		t0 = ms_now();
		r = mig_uri_connect(&u, -1, err, sizeof(err));
		took = ms_now() - t0;
		if (r < 0)
			break;
		fds[n] = r;
	}
	if (r != -ETIMEDOUT)
		fail_msg("%s: %d connects, then %d (%s)", uri, n, r, err);
	if (took < 150 || took > 3000)
		fail_msg("%s: gave up after %llu ms, not about 200", uri,
			 (unsigned long long)took);
	assert_non_null(strstr(err, "timed out"));
	assert_non_null(strstr(err, uri));
	while (n--)
		close(fds[n]);
	mig_uri_free(&u);
}

static void test_migrate_uri_connect_to_full_queue_times_out(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	socklen_t len = sizeof(sin);
	char uri[128];
	int l4, lu;

	(void)state;
	l4 = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l4, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(l4, 0), 0);
	assert_int_equal(getsockname(l4, (struct sockaddr *)&sin, &len), 0);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", ntohs(sin.sin_port));
	connect_until_timeout(uri);
	close(l4);

	lu = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/full.sock", tmpdir);
	assert_int_equal(bind(lu, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lu, 0), 0);
	snprintf(uri, sizeof(uri), "unix:%s", sun.sun_path);
	connect_until_timeout(uri);
	close(lu);
}

/* fd: hands the taken descriptor back, made blocking and close-on-exec. */
static void test_migrate_uri_fd_both_ends_use_taken_fd(void **state)
{
	struct mig_uri u;
	char err[256], bound[16];
	int sp[2], fd, lfd, dfd;

	(void)state;
	assert_int_equal(
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp), 0);
	assert_int_equal(mig_uri_parse("fd:migrate", &u, err, sizeof(err)), 0);
	fd = mig_uri_connect(&u, sp[0], err, sizeof(err));
	assert_int_equal(fd, sp[0]);
	assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(mig_uri_listen(&u, sp[1], &lfd, &dfd, bound,
					sizeof(bound), err, sizeof(err)),
			 0);
	assert_int_equal(lfd, -1);
	assert_int_equal(dfd, sp[1]);
	assert_false(fcntl(dfd, F_GETFL) & O_NONBLOCK);
	close(sp[0]);
	close(sp[1]);
	mig_uri_free(&u);
}

/* A descriptor passed with a URI of another kind is closed, not leaked. */
static void test_migrate_uri_stray_taken_fd_closed(void **state)
{
	struct mig_uri u;
	char err[256];
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(
		mig_uri_parse("unix:/nonexistent/s", &u, err, sizeof(err)), 0);
	assert_true(mig_uri_connect(&u, p[0], err, sizeof(err)) < 0);
	assert_false(fd_is_open(p[0]));
	close(p[1]);
	mig_uri_free(&u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate_uri_unix_parses_path),
		cmocka_unit_test(test_migrate_uri_tcp_forms_parse),
		cmocka_unit_test(test_migrate_uri_fd_and_file_parse),
		cmocka_unit_test(test_migrate_uri_bad_forms_refused_naming_uri),
		cmocka_unit_test(test_migrate_uri_fds_put_take_close_replace),
		cmocka_unit_test(test_migrate_uri_fds_full_refuses_and_closes),
		cmocka_unit_test(
			test_migrate_uri_unix_round_trip_and_stale_replaced),
		cmocka_unit_test(
			test_migrate_uri_unix_live_or_other_file_refused),
		cmocka_unit_test(test_migrate_uri_tcp4_port0_round_trip),
		cmocka_unit_test(test_migrate_uri_tcp6_port0_round_trip),
		cmocka_unit_test(test_migrate_uri_tcp_name_and_fixed_port),
		cmocka_unit_test(test_migrate_uri_connect_failures_name_uri),
		cmocka_unit_test(
			test_migrate_uri_connect_to_full_queue_times_out),
		cmocka_unit_test(test_migrate_uri_file_offset_write_then_read),
		cmocka_unit_test(test_migrate_uri_file_symlink_refused),
		cmocka_unit_test(
			test_migrate_uri_file_incoming_missing_refused),
		cmocka_unit_test(test_migrate_uri_fd_both_ends_use_taken_fd),
		cmocka_unit_test(test_migrate_uri_stray_taken_fd_closed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
