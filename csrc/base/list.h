/* Intrusive lists whose link members have their own names (a struct is on
 * several lists at once: a DERP connection is on the server's list, its
 * key's list and the watchers' list). Macros, so that one definition
 * serves every struct and member name; each argument is evaluated as an
 * lvalue, so pass plain expressions without side effects. */
#ifndef SPANZA_BASE_LIST_H
#define SPANZA_BASE_LIST_H

#include <stddef.h>

/* Appends e to the singly linked FIFO (head, tail) and counts it. */
#define SPZ_FIFO_PUSH(head, tail, count, e, next) \
	do {                                      \
		(e)->next = NULL;                 \
		if (tail)                         \
			(tail)->next = (e);       \
		else                              \
			(head) = (e);             \
		(tail) = (e);                     \
		(count)++;                        \
	} while (0)

/* Takes the first element of the FIFO into out (NULL when it is empty). */
#define SPZ_FIFO_POP(head, tail, count, out, next) \
	do {                                       \
		(out) = (head);                    \
		if (out) {                         \
			(head) = (out)->next;      \
			if (!(head))               \
				(tail) = NULL;     \
			(count)--;                 \
			(out)->next = NULL;        \
		}                                  \
	} while (0)

/* Appends e to the doubly linked list (head, tail). */
#define SPZ_DLIST_APPEND(head, tail, e, prev, next) \
	do {                                        \
		(e)->next = NULL;                   \
		(e)->prev = (tail);                 \
		if (tail)                           \
			(tail)->next = (e);         \
		else                                \
			(head) = (e);               \
		(tail) = (e);                       \
	} while (0)

/* Unlinks e from a doubly linked list that has only a head. */
#define SPZ_DLIST_UNLINK(head, e, prev, next)        \
	do {                                         \
		if ((e)->prev)                       \
			(e)->prev->next = (e)->next; \
		else                                 \
			(head) = (e)->next;          \
		if ((e)->next)                       \
			(e)->next->prev = (e)->prev; \
		(e)->next = (e)->prev = NULL;        \
	} while (0)

/* Unlinks e from a doubly linked list with a head and a tail. */
#define SPZ_DLIST_UNLINK_TAIL(head, tail, e, prev, next) \
	do {                                             \
		if (!(e)->next)                          \
			(tail) = (e)->prev;              \
		SPZ_DLIST_UNLINK(head, e, prev, next);   \
	} while (0)

#endif
