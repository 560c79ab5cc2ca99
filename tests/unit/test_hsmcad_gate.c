/* SPDX-License-Identifier: Apache-2.0
 *
 * test_hsmcad_gate.c -- the pending-connection gate on socket pairs: a connection over the
 * per-address cap evicts the oldest pending one of its own address, over the total cap the oldest
 * of all; an evicted socket is shut down (its peer reads end of stream), an authenticated one is
 * never evicted, and a closed one leaves the count.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "gate.h"

#define N 8

struct conn {
    int fd[2]; /* [0] the daemon's side, [1] the client's */
    struct hsmcad_gate_node node;
};

static unsigned
pending(struct hsmcad_gate *g)
{
    unsigned n = 0;

    hsmcad_gate_counts(g, &n, NULL);
    return n;
}

static uint64_t
evicted(struct hsmcad_gate *g)
{
    uint64_t n = 0;

    hsmcad_gate_counts(g, NULL, &n);
    return n;
}

static void
mk(struct conn *c)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c->fd), 0);
}

static void
rm(struct conn *c)
{
    close(c->fd[0]);
    close(c->fd[1]);
}

/* 1 if the client's side reads end of stream now (its daemon side was shut down). */
static int
shut(const struct conn *c)
{
    struct pollfd p = {.fd = c->fd[1], .events = POLLIN};
    char b;

    return poll(&p, 1, 0) == 1 && recv(c->fd[1], &b, 1, MSG_DONTWAIT) == 0;
}

static struct sockaddr_in
addr(const char *ip)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

static void
per_address_cap_evicts_own_oldest(void **state)
{
    struct hsmcad_gate *g = hsmcad_gate_new(100, 3);
    struct conn c[N];
    struct sockaddr_in a = addr("127.0.0.2"), b = addr("127.0.0.1");
    unsigned i;

    (void)state;
    assert_non_null(g);
    for (i = 0; i < N; i++)
        mk(&c[i]);
    /* one connection of b first: the oldest of all, never evicted by a's cap */
    assert_int_equal(hsmcad_gate_open(g, &c[0].node, c[0].fd[0], (struct sockaddr *)&b), 0);
    for (i = 1; i <= 3; i++)
        assert_int_equal(hsmcad_gate_open(g, &c[i].node, c[i].fd[0], (struct sockaddr *)&a), 0);
    assert_int_equal(pending(g), 4);
    assert_false(shut(&c[1]));
    /* a's fourth evicts a's oldest (c[1]), not b's */
    assert_int_equal(hsmcad_gate_open(g, &c[4].node, c[4].fd[0], (struct sockaddr *)&a), 1);
    assert_true(shut(&c[1]));
    assert_false(shut(&c[0]));
    assert_false(shut(&c[2]));
    assert_int_equal(pending(g), 4);
    assert_int_equal(evicted(g), 1);
    /* closing the evicted one changes nothing; closing a pending one frees its place */
    hsmcad_gate_close(g, &c[1].node);
    assert_int_equal(pending(g), 4);
    hsmcad_gate_close(g, &c[2].node);
    hsmcad_gate_close(g, &c[2].node);
    assert_int_equal(pending(g), 3);
    assert_int_equal(hsmcad_gate_open(g, &c[5].node, c[5].fd[0], (struct sockaddr *)&a), 0);
    for (i = 0; i < N; i++)
        rm(&c[i]);
    hsmcad_gate_free(g);
}

static void
total_cap_evicts_oldest_pending_never_authenticated(void **state)
{
    struct hsmcad_gate *g = hsmcad_gate_new(3, 0);
    struct conn c[N];
    struct sockaddr_in a = addr("127.0.0.1");
    unsigned i;

    (void)state;
    assert_non_null(g);
    for (i = 0; i < N; i++)
        mk(&c[i]);
    for (i = 0; i < 3; i++)
        assert_int_equal(hsmcad_gate_open(g, &c[i].node, c[i].fd[0], (struct sockaddr *)&a), 0);
    /* c[0] authenticates: it leaves the gate, so c[1] is now the oldest pending */
    hsmcad_gate_authenticated(g, &c[0].node);
    hsmcad_gate_authenticated(g, &c[0].node);
    assert_int_equal(pending(g), 2);
    assert_int_equal(hsmcad_gate_open(g, &c[3].node, c[3].fd[0], (struct sockaddr *)&a), 0);
    assert_int_equal(hsmcad_gate_open(g, &c[4].node, c[4].fd[0], (struct sockaddr *)&a), 1);
    assert_true(shut(&c[1]));
    assert_false(shut(&c[0]));
    assert_false(shut(&c[2]));
    assert_int_equal(hsmcad_gate_open(g, &c[5].node, c[5].fd[0], NULL), 1);
    assert_true(shut(&c[2]));
    assert_false(shut(&c[0]));
    assert_int_equal(pending(g), 3);
    assert_int_equal(evicted(g), 2);
    for (i = 0; i < 6; i++)
        hsmcad_gate_close(g, &c[i].node);
    assert_int_equal(pending(g), 0);
    for (i = 0; i < N; i++)
        rm(&c[i]);
    hsmcad_gate_free(g);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(per_address_cap_evicts_own_oldest),
        cmocka_unit_test(total_cap_evicts_oldest_pending_never_authenticated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
