/* SPDX-License-Identifier: Apache-2.0
 *
 * gate.h -- admission of connections that have not authenticated yet (docs/hardening.md).
 * libmicrohttpd accepts every connection up to its own limit and gives a TLS handshake the whole
 * idle timeout, so idle sockets could hold every slot. The gate tracks each connection from its
 * accept until it has shown a client certificate bound in roles.json ("pending"), in the order
 * they came. A new connection over the per-address or the total cap of pending connections evicts
 * the oldest pending one (of its own address first): the socket is shut down and libmicrohttpd
 * closes it. Authenticated connections are never evicted, and the slots between the pending cap
 * and libmicrohttpd's connection limit are theirs alone. No libmicrohttpd here: the caller hands
 * in file descriptors and addresses.
 */
#ifndef HSMCAD_GATE_H
#define HSMCAD_GATE_H

#include <stdint.h>
#include <sys/socket.h>

/* One connection's place in the gate; embedded in the caller's per-connection state. */
struct hsmcad_gate_node {
    struct hsmcad_gate_node *prev, *next;
    int fd;
    int pending; /* 1 while in the gate's list */
    unsigned char addr[16];
    unsigned addr_len;
};

struct hsmcad_gate;

/* A gate holding at most pending_max pending connections, per_addr_max of them from one address
 * (0 = no per-address cap). NULL when out of memory. */
struct hsmcad_gate *hsmcad_gate_new(unsigned pending_max, unsigned per_addr_max);
void hsmcad_gate_free(struct hsmcad_gate *g);

/* A new connection on fd from sa: n joins the pending list; returns how many older pending
 * connections were evicted (shut down) to make room. */
unsigned hsmcad_gate_open(struct hsmcad_gate *g, struct hsmcad_gate_node *n, int fd,
                          const struct sockaddr *sa);

/* n authenticated: it leaves the pending list and can no longer be evicted. Idempotent. */
void hsmcad_gate_authenticated(struct hsmcad_gate *g, struct hsmcad_gate_node *n);

/* n's connection is closing (call before its fd is closed). Idempotent. */
void hsmcad_gate_close(struct hsmcad_gate *g, struct hsmcad_gate_node *n);

/* Pending connections now, and evictions since the start (either pointer may be NULL). */
void hsmcad_gate_counts(struct hsmcad_gate *g, unsigned *pending, uint64_t *evicted);

#endif
