/*
 * rpc: QEMU's Machine Protocol (QMP) as a library, with no knowledge of
 * the VM. The server half listens on a Unix socket of a libevent loop,
 * frames and validates client input, and dispatches commands to handlers
 * the daemon registers; the client half is a small blocking connection
 * for mmuctl and tests. docs/QMP.md describes the protocol as mmud speaks
 * it.
 *
 * Threads: every function of the server half runs on the thread that runs
 * the event_base given to qmp_server_new() (the loop thread), except
 * qmp_server_call_soon(), which any thread may call until
 * qmp_server_free() starts. The client half is single-threaded per
 * connection.
 *
 * Signals: libevent writes to sockets with write(2), so a process that
 * uses the server must ignore SIGPIPE (a client that vanishes would
 * otherwise kill it). The library leaves signal dispositions alone.
 */
#ifndef MMUD_RPC_H
#define MMUD_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct qmp_server;
struct qmp_request;
struct qmp_conn;

/*
 * Limits on what one client controls. A message larger than
 * QMP_MAX_MESSAGE or nested deeper than QMP_MAX_DEPTH gets an error reply
 * and the connection is closed; so does a client whose unread output
 * exceeds QMP_MAX_OUTPUT. A message whose parsed form would take more
 * than QMP_MAX_PARSED bytes gets a parse error (the connection stays).
 *
 * Requests wait as their text and are parsed only when their turn
 * comes, so a queue costs its bytes. At most QMP_MAX_QUEUED requests, or
 * QMP_MAX_QUEUED_BYTES of text, wait behind a pending one, and all
 * clients together hold at most QMP_MAX_TOTAL_QUEUED; past either the
 * server stops reading from that client until there is room again (the
 * socket buffer pushes back on the client).
 */
#define QMP_MAX_MESSAGE (1u << 20)
#define QMP_MAX_DEPTH 1024
#define QMP_MAX_OUTPUT (16u << 20)
#define QMP_MAX_PARSED (8u << 20)
#define QMP_MAX_QUEUED 64
#define QMP_MAX_QUEUED_BYTES (1u << 20)
#define QMP_MAX_TOTAL_QUEUED (16u << 20)
#define QMP_MAX_CLIENTS 64

/*
 * A client that has not finished capabilities negotiation this long
 * after connecting is closed. At QMP_MAX_CLIENTS a new connection closes
 * the oldest idle client that has not negotiated, if there is one, and is
 * refused otherwise. Each is logged to stderr (a refusal at most once a
 * second).
 */
#define QMP_NEGOTIATE_TIMEOUT_MS 10000

/*
 * The size every reply stays under unless the client asked for a large
 * one (a long id, a big ringbuf-read): QEMU's Python client (asyncio)
 * reads at most 64 KiB per message and drops the connection past it.
 */
#define QMP_SMALL_REPLY (64u << 10)

/* QEMU's QapiErrorClass; nothing else may appear on the wire. */
enum qmp_error_class {
	QMP_ERROR_GENERIC,
	QMP_ERROR_COMMAND_NOT_FOUND,
	QMP_ERROR_DEVICE_NOT_ACTIVE,
	QMP_ERROR_DEVICE_NOT_FOUND,
	QMP_ERROR_KVM_MISSING_CAP,
};

/* The wire name of an error class ("GenericError", ...). */
const char *qmp_error_class_name(enum qmp_error_class cls);

/*
 * Argument types a command can declare. INT is a JSON integer from -2^63
 * to 2^64 - 1 (read it with qmp_json_u64()); NUMBER accepts integers and
 * reals; ANY accepts every value.
 */
enum qmp_arg_type {
	QMP_ARG_STRING,
	QMP_ARG_INT,
	QMP_ARG_BOOL,
	QMP_ARG_NUMBER,
	QMP_ARG_OBJECT,
	QMP_ARG_ARRAY,
	QMP_ARG_ANY,
};

/*
 * One declared argument. A command's arguments are an array ended by an
 * entry whose name is NULL (QMP_ARGS_END); the array must outlive the
 * server (a static const table).
 */
struct qmp_arg {
	const char *name;
	enum qmp_arg_type type;
	bool optional;
};

#define QMP_ARGS_END         \
	{                    \
		.name = NULL \
	}

/* The version in the greeting and in query-version. */
struct qmp_version {
	int major, minor, micro;
	const char *package;
};

/*
 * A command handler. @args is the validated "arguments" object (an empty
 * object when the client sent none); it stays valid until @req is
 * answered. The handler answers @req with exactly one qmp_reply_*() call,
 * either before it returns (a synchronous command) or later on the loop
 * thread (an asynchronous one: the client's later requests wait behind
 * it, so replies keep request order).
 */
typedef void qmp_handler_fn(struct qmp_request *req, json_t *args,
			    void *opaque);

/*
 * Listens on @path (a Unix socket, mode 0600; a stale socket file is
 * replaced) on @base. qmp_capabilities, query-commands and query-version
 * are built in. Returns 0 or -errno.
 */
int qmp_server_new(struct event_base *base, const char *path,
		   const struct qmp_version *version, struct qmp_server **out);

/*
 * Adds a command. @name is copied; @args (NULL for none) is kept by
 * reference. Returns -EEXIST for a name already registered, -EINVAL for
 * a name that is empty or longer than 127 bytes.
 */
int qmp_server_register(struct qmp_server *srv, const char *name,
			const struct qmp_arg *args, qmp_handler_fn *fn,
			void *opaque);

/*
 * Sends {"event": @name, "data": @data, "timestamp": ...} to every client
 * that has finished capabilities negotiation. @data is stolen and may be
 * NULL (the member is then left out, as QEMU does).
 */
void qmp_server_emit_event(struct qmp_server *srv, const char *name,
			   json_t *data);

/*
 * Runs fn(arg) on the loop thread soon. Safe from any thread: this is how
 * work finished on another thread completes its request (the callback
 * calls qmp_reply_*()). Returns 0 or -ENOMEM.
 */
int qmp_server_call_soon(struct qmp_server *srv, void (*fn)(void *arg),
			 void *arg);

/* Changes QMP_NEGOTIATE_TIMEOUT_MS for clients that connect later. */
void qmp_server_set_negotiate_timeout(struct qmp_server *srv, unsigned int ms);

/* How many clients are connected (tests and the daemon's status). */
unsigned int qmp_server_nr_clients(const struct qmp_server *srv);

/*
 * Closes the listener (removing the socket file if it is still the one
 * bound: qmp_unix_unlink()) and every client, after
 * trying for at most 100 ms to write what is queued for them (so the
 * reply to quit and the SHUTDOWN event get out). Requests still pending
 * are orphaned: answering one later only frees it.
 */
void qmp_server_free(struct qmp_server *srv);

/*
 * A listening Unix socket bound at a path (rpc/unix_socket.c), for the
 * QMP server and any other socket of the daemon's. The parent directory
 * is opened once and the socket bound through it, with mode 0600 from
 * the start. A stale socket file (nobody listening) is replaced; a live
 * one is -EADDRINUSE, any other kind of file -EEXIST. Returns the
 * listening fd (non-blocking, close-on-exec) or -errno; *out records
 * where it is for qmp_unix_unlink().
 */
/*
 * Back-off for a libevent listener while accept() fails (out of
 * descriptors or memory: rpc/accept_backoff.c). The listener's error
 * callback calls qmp_accept_backoff_failed() with the error, its accept
 * callback qmp_accept_backoff_accepted() first; each logs once per
 * episode under the name who. Event-loop thread only.
 */
struct evconnlistener;
struct qmp_accept_backoff;
struct qmp_accept_backoff *qmp_accept_backoff_new(struct evconnlistener *l,
						  const char *who);
void qmp_accept_backoff_failed(struct qmp_accept_backoff *b, int err);
void qmp_accept_backoff_accepted(struct qmp_accept_backoff *b);
void qmp_accept_backoff_free(struct qmp_accept_backoff *b);

struct qmp_unix_socket;
int qmp_unix_listen(const char *path, int backlog,
		    struct qmp_unix_socket **out);
/* True while the directory still holds the very socket file we bound. */
bool qmp_unix_is_ours(const struct qmp_unix_socket *s);
/*
 * Removes the socket file only if it is still ours (the directory it
 * was bound in holds the same device and inode), whatever happened to
 * the path since; then frees @s. NULL does nothing.
 */
void qmp_unix_unlink(struct qmp_unix_socket *s);

/* Answers @req with {"return": {}}. */
void qmp_reply_ok(struct qmp_request *req);
/* Answers @req with {"return": @ret}; @ret is stolen. */
void qmp_reply_return(struct qmp_request *req, json_t *ret);
/* Answers @req with {"error": {"class": ..., "desc": ...}}. */
void qmp_reply_error(struct qmp_request *req, enum qmp_error_class cls,
		     const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* QEMU's text for a bad value: "Parameter '@field' expects @what". */
void qmp_reply_invalid_value(struct qmp_request *req, const char *field,
			     const char *what);

/*
 * Integers as QEMU reads them: a JSON integer is a signed 64-bit value,
 * or, from 2^63 to 2^64 - 1, an unsigned one that jansson cannot hold
 * (rpc keeps it in a form of its own). QMP_ARG_INT accepts both. Read an
 * argument with qmp_json_u64(): true with the value for an integer from
 * 0 to 2^64 - 1, false for a negative one or a non-integer (the caller
 * range-checks and names the argument). json_integer_value() reads 0
 * from the unsigned form: use these instead.
 */
bool qmp_json_is_integer(const json_t *v);
bool qmp_json_u64(const json_t *v, uint64_t *out);

/* The server @req came to. */
struct qmp_server *qmp_request_server(const struct qmp_request *req);
/* The command name of @req. */
const char *qmp_request_command(const struct qmp_request *req);
/* False once the client of @req has gone (the answer would be dropped). */
bool qmp_request_has_client(const struct qmp_request *req);

/*
 * Descriptors a client passes with SCM_RIGHTS on the QMP socket (as
 * libvirt passes one with getfd) travel with the request whose text the
 * carrying sendmsg() completed: the text that holds the last byte sent
 * with them, or the last one before it when only blanks follow. Those
 * that arrive with no request are closed once their bytes are read;
 * those a handler does not take are closed when the request is
 * answered. A client holds at most QMP_MAX_CLIENT_FDS at once (waiting
 * or with its unanswered requests); more are closed as they arrive, and
 * all of them when it disconnects.
 */
#define QMP_MAX_CLIENT_FDS 8
/* Takes the first descriptor still with @req (the caller owns it; it is
 * close-on-exec), or -1 if none is. Loop thread. */
int qmp_request_take_fd(struct qmp_request *req);

/*
 * The client half: a blocking connection with timeouts (milliseconds; a
 * negative timeout waits forever). Functions return 0 or -errno:
 * -ETIMEDOUT, -ECONNRESET when the server closed the connection, -EPROTO
 * for a message that is not a JSON object or is larger than 16 MiB.
 */

/* Connects to @path and reads the greeting. */
int qmp_conn_open(const char *path, int timeout_ms, struct qmp_conn **out);
/* The greeting ({"QMP": ...}); owned by the connection. */
json_t *qmp_conn_greeting(const struct qmp_conn *conn);
/* Sends qmp_capabilities and waits for its success. */
int qmp_conn_negotiate(struct qmp_conn *conn, int timeout_ms);
/* Sends one message (compact JSON). */
int qmp_conn_send(struct qmp_conn *conn, const json_t *msg);
/* Sends bytes as they are (tests use it to send broken input). */
int qmp_conn_send_raw(struct qmp_conn *conn, const void *buf, size_t len);
/*
 * Returns the next message from the server, reply or event; events that
 * arrived during qmp_conn_execute() come first. The caller owns *msg.
 */
int qmp_conn_recv(struct qmp_conn *conn, int timeout_ms, json_t **msg);
/*
 * Runs one command: sends {"execute": @cmd, "arguments": @args, "id": N}
 * (@args stolen, may be NULL) and returns the whole response object
 * ({"return": ...} or {"error": ...}) in *reply. Events that arrive
 * meanwhile are kept (up to 1024) for qmp_conn_recv().
 */
int qmp_conn_execute(struct qmp_conn *conn, const char *cmd, json_t *args,
		     int timeout_ms, json_t **reply);
/* The connection's socket (for poll). */
int qmp_conn_fd(const struct qmp_conn *conn);
void qmp_conn_close(struct qmp_conn *conn);

#endif
