/* SPDX-License-Identifier: Apache-2.0
 *
 * gate.c -- the pending-connection list of gate.h: one mutex, a list in arrival order, linear
 * scans (the list holds at most pending_max nodes, and a scan costs far less than the TLS
 * handshake of the connection that triggers it).
 */
#include "gate.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct hsmcad_gate {
    pthread_mutex_t mu;
    struct hsmcad_gate_node *head, *tail; /* oldest first */
    unsigned n;
    unsigned pending_max, per_addr_max;
    uint64_t evicted;
};

struct hsmcad_gate *
hsmcad_gate_new(unsigned pending_max, unsigned per_addr_max)
{
    struct hsmcad_gate *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    pthread_mutex_init(&g->mu, NULL);
    g->pending_max = pending_max > 0 ? pending_max : 1;
    g->per_addr_max = per_addr_max;
    return g;
}

void
hsmcad_gate_free(struct hsmcad_gate *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* Under mu. */
static void
unlink_node(struct hsmcad_gate *g, struct hsmcad_gate_node *n)
{
    if (!n->pending)
        return;
    if (n->prev != NULL)
        n->prev->next = n->next;
    else
        g->head = n->next;
    if (n->next != NULL)
        n->next->prev = n->prev;
    else
        g->tail = n->prev;
    n->prev = n->next = NULL;
    n->pending = 0;
    g->n--;
}

/* Under mu: shut the connection down (libmicrohttpd sees the end of the stream and closes it; the
 * fd stays open until its close callback, which takes mu, so it cannot be reused meanwhile). */
static void
evict(struct hsmcad_gate *g, struct hsmcad_gate_node *n)
{
    unlink_node(g, n);
    (void)shutdown(n->fd, SHUT_RDWR);
    g->evicted++;
}

static void
addr_of(const struct sockaddr *sa, struct hsmcad_gate_node *n)
{
    n->addr_len = 0;
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        memcpy(n->addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        n->addr_len = 4;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(n->addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        n->addr_len = 16;
    }
}

unsigned
hsmcad_gate_open(struct hsmcad_gate *g, struct hsmcad_gate_node *n, int fd,
                 const struct sockaddr *sa)
{
    struct hsmcad_gate_node *p, *oldest_same = NULL;
    unsigned same = 0, ev = 0;

    memset(n, 0, sizeof(*n));
    n->fd = fd;
    addr_of(sa, n);
    pthread_mutex_lock(&g->mu);
    if (g->per_addr_max > 0 && n->addr_len > 0) {
        for (p = g->head; p != NULL; p = p->next) {
            if (p->addr_len == n->addr_len && memcmp(p->addr, n->addr, n->addr_len) == 0) {
                if (oldest_same == NULL)
                    oldest_same = p;
                same++;
            }
        }
        if (same >= g->per_addr_max) {
            evict(g, oldest_same);
            ev++;
        }
    }
    while (g->n >= g->pending_max && g->head != NULL) {
        evict(g, g->head);
        ev++;
    }
    n->prev = g->tail;
    if (g->tail != NULL)
        g->tail->next = n;
    else
        g->head = n;
    g->tail = n;
    n->pending = 1;
    g->n++;
    pthread_mutex_unlock(&g->mu);
    return ev;
}

void
hsmcad_gate_authenticated(struct hsmcad_gate *g, struct hsmcad_gate_node *n)
{
    pthread_mutex_lock(&g->mu);
    unlink_node(g, n);
    pthread_mutex_unlock(&g->mu);
}

void
hsmcad_gate_close(struct hsmcad_gate *g, struct hsmcad_gate_node *n)
{
    pthread_mutex_lock(&g->mu);
    unlink_node(g, n);
    pthread_mutex_unlock(&g->mu);
}

void
hsmcad_gate_counts(struct hsmcad_gate *g, unsigned *pending, uint64_t *evicted)
{
    pthread_mutex_lock(&g->mu);
    if (pending != NULL)
        *pending = g->n;
    if (evicted != NULL)
        *evicted = g->evicted;
    pthread_mutex_unlock(&g->mu);
}
