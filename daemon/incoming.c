/*
 * Live migration, the destination side (docs/MIGRATION.md, "The
 * daemon's part"): --incoming URI or QMP migrate-incoming listens (or
 * opens the file or named descriptor) on the loop thread, before the
 * reply; a thread of its own (registered with the MMU's RCU) accepts the
 * one connection and loads the stream into the VM, whose vCPUs have
 * never run: the configuration checked first, RAM through each slot's
 * host mapping, each vCPU's state loaded while it is parked (which also
 * sets its TSC offset so the guest's TSC goes on from the source's),
 * COM1, each drive's virtio-mmio transport (its rings checked against
 * guest RAM; the image is the one this VM opened, which the
 * configuration showed to match the source's), the console bytes, the
 * source's run state, the end marker and nothing after it. Then
 * the MMU is zapped, so every vCPU builds its shadow root for the CR3 it
 * now holds, and control.c runs the VM (or keeps it paused, or takes
 * the source's io-error or other stopped state as QEMU does). A stream
 * that fails to load is reported (MIGRATION failed, stderr) and mmud
 * exits with status 6. The stream's format is core/migrate's; URIs are
 * daemon/migrate_uri.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "dev/dev.h"
#include "dev/virtio_blk.h"
#include "migrate.h"
#include "migrate_uri.h"
#include "migration.h"
#include "mmu.h"
#include "mmu_rcu.h"
#include "mmud.h"
#include "vm.h"

struct load_ctx {
	const struct migrate_vcpu *v;
	char err[200];
};

static int load_cpu(struct x86_cpu *cpu, void *arg)
{
	struct load_ctx *c = arg;

	return migrate_vcpu_load(cpu, c->v, c->err, sizeof(c->err));
}

struct load_irq_ctx {
	struct vm *vm;
	const struct migrate_vcpu_irq *v;
	char err[200];
};

/* docs/MIGRATION.md, "vCPU interrupt state": with the vCPU parked. */
static int load_cpu_irq(struct x86_cpu *cpu, void *arg)
{
	struct load_irq_ctx *c = arg;

	return migrate_vcpu_irq_load(cpu, vm_lapic(c->vm, c->v->index),
				     vm_kvmclock(c->vm, c->v->index), c->v,
				     mig_now_ns(), c->err, sizeof(c->err));
}

static void console_bytes(struct mmud_migration *m, const uint8_t *p,
			  uint32_t len)
{
	if (m->console && len)
		mmud_console_write(m->console, (const char *)p, len);
}

/*
 * The whole stream, as migrate_load() reads it, but with each vCPU's
 * state loaded through vm_vcpu_with_cpu() (the vCPU parked, its thread
 * kept out) instead of through bare CPU pointers. 0, or -errno with the
 * reason in err, naming the section.
 */
static int load_stream(struct mmud_migration *m, struct migrate_reader *r,
		       enum migrate_runstate *runstate, char *err,
		       size_t errlen)
{
	struct vm *vm = m->vm;
	struct vm_memslot_info info[VM_MAX_MEMSLOTS];
	struct migrate_ram_target targets[VM_MAX_MEMSLOTS];
	struct migrate_config *want = malloc(sizeof(*want)),
			      *got = malloc(sizeof(*got));
	struct migrate_vcpu *v = malloc(sizeof(*v));
	struct dev_serial_state *ss = malloc(sizeof(*ss));
	struct migrate_vcpu_irq *vi = malloc(sizeof(*vi));
	struct migrate_vm_irq *mi = malloc(sizeof(*mi));
	struct migrate_virtio_blk *vb = malloc(sizeof(*vb));
	struct migrate_ram_stats rs = { 0 };
	bool seen[MIGRATE_MAX_VCPUS] = { false };
	bool seen_irq[MIGRATE_MAX_VCPUS] = { false };
	bool seen_blk[MIGRATE_MAX_DRIVES] = { false };
	bool have_config = false, have_serial = false, have_vm_irq = false;
	bool have_runstate = false;
	unsigned int nr = vm_memslots(vm, info, VM_MAX_MEMSLOTS), nr_seen = 0;
	unsigned int nr_irq = 0, nr_blk = 0;
	uint64_t nsec = 0;
	int rc;

	if (!want || !got || !v || !ss || !vi || !mi || !vb) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if (nr > VM_MAX_MEMSLOTS)
		nr = VM_MAX_MEMSLOTS;
	for (unsigned int i = 0; i < nr; i++)
		targets[i] = (struct migrate_ram_target){
			.id = info[i].slot,
			.hva = info[i].hva,
			.size = info[i].size,
			.use_fd = info[i].fd >= 0,
			.fd = info[i].fd,
		};
	rc = migrate_config_from_vm(vm, want);
	if (rc < 0) {
		snprintf(err, errlen, "this VM's configuration: %s",
			 strerror(-rc));
		goto out;
	}
	rc = migrate_read_header(r);
	while (!rc) {
		const uint8_t *p;
		uint16_t type;
		uint32_t len;
		char msg[256];

		rc = migrate_read_section(r, &type, &p, &len);
		if (rc)
			break;
		nsec++;
		if (!have_config && type != MIGRATE_SEC_CONFIG) {
			snprintf(err, errlen,
				 "section %llu: the configuration must come "
				 "first",
				 (unsigned long long)nsec);
			rc = -EPROTO;
			goto out;
		}
		switch (type) {
		case MIGRATE_SEC_CONFIG:
			if (have_config) {
				snprintf(err, errlen,
					 "section %llu: a second configuration",
					 (unsigned long long)nsec);
				rc = -EPROTO;
				goto out;
			}
			rc = migrate_parse_config(r, p, len, got);
			if (!rc &&
			    migrate_config_match(want, got, msg, sizeof(msg))) {
				snprintf(err, errlen,
					 "the source's configuration does not "
					 "match this VM's: %s",
					 msg);
				rc = -EINVAL;
				goto out;
			}
			have_config = true;
			break;
		case MIGRATE_SEC_RAM:
			rc = migrate_load_ram(r, p, len, targets, nr, &rs);
			break;
		case MIGRATE_SEC_VCPU: {
			struct load_ctx c = { .v = v };

			rc = migrate_parse_vcpu(r, p, len, v);
			if (rc)
				break;
			if (v->index >= got->nr_vcpus || seen[v->index]) {
				snprintf(err, errlen,
					 "section %llu (vCPU): vCPU %u "
					 "unexpected or twice",
					 (unsigned long long)nsec, v->index);
				rc = -EPROTO;
				goto out;
			}
			if (vm_vcpu_with_cpu(vm, v->index, load_cpu, &c)) {
				snprintf(err, errlen,
					 "section %llu (vCPU): vCPU %u: %s",
					 (unsigned long long)nsec, v->index,
					 c.err);
				rc = -EINVAL;
				goto out;
			}
			seen[v->index] = true;
			nr_seen++;
			break;
		}
		case MIGRATE_SEC_SERIAL:
			if (have_serial) {
				snprintf(err, errlen,
					 "section %llu (COM1): a second COM1 "
					 "state",
					 (unsigned long long)nsec);
				rc = -EPROTO;
				goto out;
			}
			rc = migrate_parse_serial(r, p, len, ss);
			if (!rc && !dev_serial_load(vm_serial(vm), ss, msg,
						    sizeof(msg))) {
				snprintf(err, errlen, "section %llu (COM1): %s",
					 (unsigned long long)nsec, msg);
				rc = -EINVAL;
				goto out;
			}
			have_serial = true;
			break;
		case MIGRATE_SEC_VCPU_IRQ: {
			struct load_irq_ctx c = { .vm = vm, .v = vi };
			struct vm_vcpu_info vinfo;

			rc = migrate_parse_vcpu_irq(r, p, len, vi);
			if (rc)
				break;
			if (vi->index >= got->nr_vcpus || !seen[vi->index] ||
			    seen_irq[vi->index]) {
				snprintf(err, errlen,
					 "section %llu (vCPU interrupts): "
					 "vCPU %u unexpected, before its vCPU "
					 "section or twice",
					 (unsigned long long)nsec, vi->index);
				rc = -EPROTO;
				goto out;
			}
			/* Only vcpu_reset() ends the wait for a SIPI: a vCPU
			 * that waits here (a bzImage's boot state) but ran on
			 * the source cannot be made to match. Outside
			 * vm_vcpu_with_cpu(), which holds the vCPU parked. */
			vm_vcpu_info(vm, vi->index, &vinfo);
			if (vinfo.wait_for_sipi && !vi->vcpu_wait_sipi)
				snprintf(c.err, sizeof(c.err),
					 "waits for a SIPI here but ran on "
					 "the source");
			if (c.err[0] ||
			    vm_vcpu_with_cpu(vm, vi->index, load_cpu_irq, &c)) {
				snprintf(err, errlen,
					 "section %llu (vCPU interrupts): vCPU "
					 "%u: %s",
					 (unsigned long long)nsec, vi->index,
					 c.err);
				rc = -EINVAL;
				goto out;
			}
			if (vi->vcpu_wait_sipi && !vinfo.wait_for_sipi)
				vm_vcpu_raise_init(vm, vi->index);
			seen_irq[vi->index] = true;
			nr_irq++;
			break;
		}
		case MIGRATE_SEC_VM_IRQ:
			if (have_vm_irq) {
				snprintf(err, errlen,
					 "section %llu (VM interrupts): a "
					 "second one",
					 (unsigned long long)nsec);
				rc = -EPROTO;
				goto out;
			}
			rc = migrate_parse_vm_irq(r, p, len, mi);
			if (!rc &&
			    migrate_vm_irq_load(vm_ioapic(vm), vm_serial(vm),
						mi, msg, sizeof(msg))) {
				snprintf(err, errlen,
					 "section %llu (VM interrupts): %s",
					 (unsigned long long)nsec, msg);
				rc = -EINVAL;
				goto out;
			}
			have_vm_irq = true;
			break;
		case MIGRATE_SEC_VIRTIO_BLK:
			rc = migrate_parse_virtio_blk(r, p, len, vb);
			if (rc)
				break;
			/* Each drive of the configuration, once. */
			if (vb->index >= got->nr_drives ||
			    seen_blk[vb->index]) {
				snprintf(err, errlen,
					 "section %llu (virtio-blk): drive %u "
					 "unexpected or twice",
					 (unsigned long long)nsec, vb->index);
				rc = -EPROTO;
				goto out;
			}
			if (!virtio_mmio_load(
				    virtio_blk_transport(vm_blk(vm, vb->index)),
				    &vb->st, msg, sizeof(msg))) {
				snprintf(err, errlen,
					 "section %llu (virtio-blk): drive %u "
					 "('%s'): %s",
					 (unsigned long long)nsec, vb->index,
					 want->drives[vb->index].id, msg);
				rc = -EINVAL;
				goto out;
			}
			seen_blk[vb->index] = true;
			nr_blk++;
			break;
		case MIGRATE_SEC_RUNSTATE:
			if (have_runstate) {
				snprintf(err, errlen,
					 "section %llu (run state): a second "
					 "one",
					 (unsigned long long)nsec);
				rc = -EPROTO;
				goto out;
			}
			rc = migrate_parse_runstate(r, p, len, runstate);
			have_runstate = true;
			break;
		case MIGRATE_SEC_CONSOLE:
			console_bytes(m, p, len);
			break;
		case MIGRATE_SEC_END:
			if (nr_seen != got->nr_vcpus) {
				snprintf(err, errlen,
					 "section %llu (end): the state of %u "
					 "of %u vCPUs before the end marker",
					 (unsigned long long)nsec, nr_seen,
					 got->nr_vcpus);
				rc = -EPROTO;
			} else if (!have_serial) {
				snprintf(err, errlen,
					 "section %llu (end): no COM1 state "
					 "before the end marker",
					 (unsigned long long)nsec);
				rc = -EPROTO;
			} else if (nr_irq != got->nr_vcpus) {
				snprintf(err, errlen,
					 "section %llu (end): the interrupt "
					 "state of %u of %u vCPUs before the "
					 "end marker",
					 (unsigned long long)nsec, nr_irq,
					 got->nr_vcpus);
				rc = -EPROTO;
			} else if (!have_vm_irq) {
				snprintf(err, errlen,
					 "section %llu (end): no VM interrupt "
					 "state before the end marker",
					 (unsigned long long)nsec);
				rc = -EPROTO;
			} else if (nr_blk != got->nr_drives) {
				snprintf(err, errlen,
					 "section %llu (end): the state of %u "
					 "of %u drives before the end marker",
					 (unsigned long long)nsec, nr_blk,
					 got->nr_drives);
				rc = -EPROTO;
			} else if (!have_runstate) {
				snprintf(err, errlen,
					 "section %llu (end): no run state "
					 "before the end marker",
					 (unsigned long long)nsec);
				rc = -EPROTO;
			}
			goto out;
		default:
			/* The reader refuses unknown types itself. */
			break;
		}
	}
	if (rc)
		snprintf(err, errlen, "%s", migrate_reader_error(r));
out:
	pthread_mutex_lock(&m->lock);
	m->st.duplicate = rs.duplicate;
	m->st.normal = rs.normal;
	m->st.transferred = migrate_reader_bytes(r);
	pthread_mutex_unlock(&m->lock);
	free(want);
	free(got);
	free(v);
	free(ss);
	free(vi);
	free(mi);
	free(vb);
	return rc;
}

/* The one connection on the listening socket; -1 when cancelled. */
static int accept_one(struct mmud_migration *m, int lfd, char *err,
		      size_t errlen)
{
	for (;;) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		bool stop;
		int fd;

		pthread_mutex_lock(&m->lock);
		stop = m->cancel;
		pthread_mutex_unlock(&m->lock);
		if (stop) {
			snprintf(err, errlen, "cancelled before a connection");
			return -ECANCELED;
		}
		/* Short waits: a shutdown is seen within 200 ms. */
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno != EAGAIN && errno != EINTR &&
		    errno != ECONNABORTED) {
			snprintf(err, errlen, "accept: %s", strerror(errno));
			return -errno;
		}
	}
}

struct incoming_end {
	struct mmud_migration *m;
	bool ok;
	enum migrate_runstate runstate; /* the source's */
};

static void incoming_end_cb(void *arg)
{
	struct incoming_end *e = arg;
	struct mmud_migration *m = e->m;

	if (m->thread_live) {
		pthread_join(m->thread, NULL);
		m->thread_live = false;
	}
	if (e->ok || m->incoming_exit_on_error)
		mmud_incoming_end(m->d, e->ok, (int)e->runstate);
	free(e);
}

static void *incoming_thread(void *arg)
{
	struct mmud_migration *m = arg;
	struct migrate_reader *r = NULL;
	struct incoming_end *e;
	char err[512] = "";
	enum migrate_runstate runstate = MIGRATE_RS_RUNNING;
	int fd, lfd, rc;

	mmu_rcu_register_thread();
	pthread_mutex_lock(&m->lock);
	lfd = m->listen_fd;
	fd = m->stream_fd;
	pthread_mutex_unlock(&m->lock);
	if (fd < 0) {
		fd = accept_one(m, lfd, err, sizeof(err));
		pthread_mutex_lock(&m->lock);
		/* One connection only: the socket goes, and its file
		 * with it (QEMU's too), accepted or not. */
		close(m->listen_fd);
		m->listen_fd = -1;
		if (m->uri.kind == MIG_URI_UNIX && unlink(m->uri.path) < 0 &&
		    errno != ENOENT)
			fprintf(stderr,
				"<4>mmud: cannot remove the migration socket "
				"%s: %s\n",
				m->uri.path, strerror(errno));
		if (fd >= 0)
			m->stream_fd = fd;
		pthread_mutex_unlock(&m->lock);
	}
	rc = fd < 0 ? fd : 0;
	if (!rc) {
		/* Blocking reads: a shutdown (quit) ends them. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		mig_set_status(m, MIG_ACTIVE);
		r = migrate_reader_new(fd);
		rc = r ? load_stream(m, r, &runstate, err, sizeof(err)) :
			 -ENOMEM;
		if (!r)
			snprintf(err, sizeof(err), "out of memory");
	}
	if (!rc) {
		/* The MMU has built nothing from the memory the stream
		 * replaced; zapped, every vCPU loads a root for its CR3. */
		mmu_zap_all(vm_mmu(m->vm));
	}
	migrate_reader_free(r);
	pthread_mutex_lock(&m->lock);
	if (m->stream_fd >= 0)
		close(m->stream_fd);
	m->stream_fd = -1;
	m->st.end_ns = mig_now_ns();
	if (rc)
		snprintf(m->error, sizeof(m->error), "%s", err);
	pthread_mutex_unlock(&m->lock);
	if (rc)
		fprintf(stderr, "<3>mmud: incoming migration failed: %s\n",
			err);
	mig_set_status(m, rc ? MIG_FAILED : MIG_COMPLETED);
	mmu_rcu_unregister_thread();
	e = malloc(sizeof(*e));
	if (e) {
		*e = (struct incoming_end){ .m = m,
					    .ok = !rc,
					    .runstate = runstate };
		if (mmud_call_soon(m->worker, incoming_end_cb, e) == 0)
			return NULL;
		free(e);
	}
	fprintf(stderr, "<2>mmud: out of memory ending the incoming "
			"migration\n");
	return NULL;
}

/* Returns with the socket listening (or the file or descriptor open):
 * main.c says READY=1 to systemd only after this, so a supervisor that
 * starts the source's migrate on it finds a destination to connect to. */
int mmud_incoming_start(struct mmud_migration *m, const char *uri, char *err,
			size_t errlen)
{
	char bound[sizeof(m->socket_address)] = "";
	int taken = -1, lfd = -1, dfd = -1, r;

	if (m->have_uri)
		mig_uri_free(&m->uri);
	m->have_uri = false;
	if (mig_uri_parse(uri, &m->uri, err, errlen) < 0)
		return -EINVAL;
	m->have_uri = true;
	if (m->uri.kind == MIG_URI_FD) {
		taken = m->fds ? mig_fds_take(m->fds, m->uri.fdname) : -ENOENT;
		if (taken < 0) {
			snprintf(err, errlen,
				 "File descriptor named '%s' has not been "
				 "found",
				 m->uri.fdname);
			return -ENOENT;
		}
	}
	r = mig_uri_listen(&m->uri, taken, &lfd, &dfd, bound, sizeof(bound),
			   err, errlen);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	memset(&m->st, 0, sizeof(m->st));
	m->st.start_ns = mig_now_ns();
	m->listen_fd = lfd;
	m->stream_fd = dfd;
	snprintf(m->socket_address, sizeof(m->socket_address), "%s", bound);
	m->status = MIG_SETUP;
	pthread_mutex_unlock(&m->lock);
	m->incoming_started = true;
	if (m->qmp && m->cap_events)
		qmp_server_emit_event(m->qmp, "MIGRATION",
				      json_pack("{s:s}", "status", "setup"));
	r = pthread_create(&m->thread, NULL, incoming_thread, m);
	if (r) {
		snprintf(err, errlen, "cannot start the incoming thread: %s",
			 strerror(r));
		return -r;
	}
	m->thread_live = true;
	return 0;
}
