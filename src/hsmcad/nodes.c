/* SPDX-License-Identifier: Apache-2.0
 *
 * nodes.c -- this node's side of a ca.activate naming several nodes (quorum_nodes.c,
 * docs/postgresql.md): a thread that looks at the store every POLL_MS for this node's rows (a
 * key asked for, a login, a window to join) and does what they say. Started only with the
 * config's node set on a PostgreSQL store; stopped before the engines it uses. Beside it, a
 * connection of its own holds the node's liveness lock (hsmca_store_node_keep) from before the
 * daemon listens until it stops, so the other nodes see at once when this one is not running.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hsmca/log.h"
#include "hsmca/quorum.h"
#include "hsmca/store.h"
#include "hsmca/store_quorum.h"

#include "hsmcad.h"

#define POLL_MS 250
#define HOLD_TRIES 20 /* at start, 5 s for a previous process's session to go */

static struct {
    struct hsmca_store *st;
    int held;
    char node[HSMCA_QNODE_NAME_MAX + 1];
} hold;

static struct {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running, stop;
    struct hsmcad *d;
} poller = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *
poll_run(void *arg)
{
    struct hsmcad *d = arg;
    struct timespec ts;
    enum hsmca_err last = HSMCA_OK;

    pthread_mutex_lock(&poller.mu);
    while (!poller.stop) {
        struct hsmca_quorum_exec ex;
        enum hsmca_err rc;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&poller.cv, &poller.mu, &ts);
        if (poller.stop)
            break;
        pthread_mutex_unlock(&poller.mu);
        pthread_rwlock_rdlock(&d->prof_lock); /* as an execution: the profiles stay put */
        hsmcad_quorum_exec(d, &ex);
        rc = hsmca_quorum_node_poll(d->quorum, &ex);
        pthread_rwlock_unlock(&d->prof_lock);
        if (rc != HSMCA_OK && rc != last) /* once per new code, not every pass */
            hsmca_log(HSMCA_LOG_WARN, "hsmcad", "node-poll", "code=%s", hsmca_err_code(rc));
        last = rc;
        pthread_mutex_lock(&poller.mu);
    }
    pthread_mutex_unlock(&poller.mu);
    return NULL;
}

/* One keep, its changes logged (not every second). */
static void
hold_keep(void)
{
    enum hsmca_err rc;
    int held = 0;

    rc = hsmca_store_node_keep(hold.st, hold.node, &held);
    if (held == hold.held)
        return;
    if (held)
        hsmca_log(HSMCA_LOG_INFO, "hsmcad", "node-live", "node=%s", hold.node);
    else if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "node-live-lost", "node=%s code=%s", hold.node,
                  hsmca_err_code(rc));
    else /* another running daemon uses this node's name, or a dead one's session lingers */
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "node-name-held", "node=%s", hold.node);
    hold.held = held;
}

enum hsmca_err
hsmcad_nodes_hold(struct hsmcad *d)
{
    struct timespec ts = {0, POLL_MS * 1000000L};
    enum hsmca_err rc;
    int i;

    if (d->cfg.node[0] == '\0' || !hsmca_store_is_pg(d->store) || hold.st != NULL)
        return HSMCA_OK;
    snprintf(hold.node, sizeof(hold.node), "%s", d->cfg.node);
    hold.held = -1; /* the first keep logs its outcome */
    /* read-only: it writes nothing, and a session lock needs no write (nor the migrations' lock) */
    rc = hsmca_store_open_readonly(d->cfg.store, &hold.st);
    if (rc != HSMCA_OK)
        return rc;
    for (i = 0; i < HOLD_TRIES; i++) {
        hold_keep();
        if (hold.held == 1)
            break;
        nanosleep(&ts, NULL);
    }
    /* not held: the daemon runs all the same (the others then wait for it to time out, as
     * before), and the keeper tries again every second */
    return HSMCA_OK;
}

void
hsmcad_nodes_keep(void)
{
    if (hold.st != NULL)
        hold_keep();
}

void
hsmcad_nodes_release(void)
{
    hsmca_store_close(hold.st);
    hold.st = NULL;
    hold.held = 0;
}

void
hsmcad_nodes_start(struct hsmcad *d)
{
    if (d->cfg.node[0] == '\0' || !hsmca_store_is_pg(d->store) || poller.running)
        return;
    poller.d = d;
    poller.stop = 0;
    if (pthread_create(&poller.th, NULL, poll_run, d) == 0)
        poller.running = 1;
    else
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "node-poll", "reason=\"no thread\"");
}

void
hsmcad_nodes_stop(void)
{
    if (!poller.running)
        return;
    pthread_mutex_lock(&poller.mu);
    poller.stop = 1;
    pthread_cond_signal(&poller.cv);
    pthread_mutex_unlock(&poller.mu);
    pthread_join(poller.th, NULL);
    poller.running = 0;
}
