/* schedule.h: which PENDING job a worker gets. Order: effective priority DESC, claimable_at,
 * job_id, where claimable_at = MAX(created_at, scheduled_at), the moment the job became
 * claimable, and effective priority = priority + floor(waited / aging_window) when
 * aging_window > 0 (waited since claimable_at). A job scheduled for later thus queues and ages
 * from its scheduled_at, not from its submission. A job back in PENDING (a retry, or a lease
 * that expired before the ack) keeps its claimable_at: its place and its aging credit count from
 * when it first became claimable. Eligible: scheduled_at reached; needs_gpu only for a worker
 * with the "gpu" capability; every requirement among the worker's capabilities; at most
 * max_retry_jobs_per_worker retry jobs held at once (a candidate is a retry job when its
 * attempt_count > 0, a held job when its attempt_count > 1, i.e. it had an earlier attempt); and
 * when more than preempt_backlog (> 0) claimable jobs (PENDING, scheduled_at reached) have a
 * priority >= preempt_priority_floor, only those are handed out (the preemption gate).
 *
 * The candidates come from partial indexes on PENDING jobs, so terminal jobs never cost a thing
 * however many there are. The claim reads the list of the classes of PENDING jobs (one needs_gpu,
 * one requirements text and one retry flag each) and seeks only those the worker can take, so
 * jobs that need what it lacks, and retry jobs while it holds its limit of them, cost its polls
 * nothing either. Of each class it reads the first job in claim order; with aging the first of
 * each priority, highest first, down to the priority that even the oldest PENDING job's credit
 * could not lift to the best found. Past 1,024 such reads it walks the PENDING jobs oldest first
 * until none left can reach the best. Past 1,024 classes listed, or a walk of 4,096 jobs, it
 * reads every claimable job in claim order (with aging, sorted) and checks each. */
#pragma once

#include "control.h"
#include "time-util.h"

/* Inside an open transaction: the job id to hand to the worker with these capabilities, or 0 and
 * *ret = NULL when none is eligible. */
int schedule_pick(Control *c, const char *worker_id, char *const *capabilities, usec_t now, char **ret_job_id);

/* Inside an open transaction: deletes the classes of the list that no PENDING job has any more
 * (*ret_forgotten: how many), so that the claims do not read them. */
int schedule_forget_empty_classes(Control *c, unsigned *ret_forgotten);
