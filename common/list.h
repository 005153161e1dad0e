/* list.h: intrusive doubly-linked lists: a head pointer, and in each item the two fields that
 * link it (named by the caller, so that an item may be on several lists). */
#pragma once

#include <stddef.h>

/* Puts item at the front of the list at head. */
#define LIST_PREPEND(head, item, next, prev)                                                                           \
        do {                                                                                                           \
                typeof(item) _li_ = (item);                                                                            \
                _li_->prev = NULL;                                                                                     \
                _li_->next = (head);                                                                                   \
                if (_li_->next)                                                                                        \
                        _li_->next->prev = _li_;                                                                       \
                (head) = _li_;                                                                                         \
        } while (0)

/* Takes item out of the list at head, which holds it, and clears its links. */
#define LIST_REMOVE(head, item, next, prev)                                                                            \
        do {                                                                                                           \
                typeof(item) _li_ = (item);                                                                            \
                if (_li_->prev)                                                                                        \
                        _li_->prev->next = _li_->next;                                                                 \
                else                                                                                                   \
                        (head) = _li_->next;                                                                           \
                if (_li_->next)                                                                                        \
                        _li_->next->prev = _li_->prev;                                                                 \
                _li_->prev = _li_->next = NULL;                                                                        \
        } while (0)
