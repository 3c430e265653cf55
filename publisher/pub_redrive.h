/*
 * pub_redrive: send dead letters back through the version gate (design.md "Not found is usually not yet").
 *
 *   certsync-publisher --config F redrive [--reason R]... [--dry-run]
 *
 * Reads topics.dlq read_committed to its last stable offset, keeps the dead letters with the given reasons
 * (default: every reason but undecodable, which can never succeed), decodes each one's original event and
 * keeps the newest per object. Then applies them DIRECTLY with the replay engine (pub_replay_apply) in gate
 * mode: against the applied state re-read per batch, an event that is not newer than what is applied is
 * skipped as stale (a newer event overtook it), the same content is skipped as a duplicate, everything else
 * is written, and each batch commits its results and applied-state records in one transaction
 * (transactional.id <publisher txn id>-redrive).
 *
 * Why not re-produce the original bytes: to the events topic, an older event appended after newer ones of
 * the same key would become the key's LAST record and compaction would delete the newer ones (design.md:
 * "Compaction keeps the last written record, not the newest version"), so a later replay would rebuild an
 * old state. To the retry topic, it would queue behind parked records whose not-before lies hours ahead
 * (one paused retry partition per events partition). Applying here has neither problem; its only cost is
 * the same narrow window as replay's against a live publisher (pub_replay.h), which the gate re-check per
 * batch keeps to one batch.
 *
 * A dead letter that fails again (still not found, write scope not fixed) is reported and stays in the
 * dead-letter topic (no new dead letter is written): run redrive again after the fix. Redriving twice is
 * harmless: the second run is skipped as a duplicate.
 * --dry-run prints what would be done against the applied state (would_applied, skipped_stale, ...) and
 * writes nothing. Exit codes as pub_cmd.h: 1 when some dead letters failed again.
 */
#ifndef PUB_REDRIVE_H
#define PUB_REDRIVE_H

#include "pub_config.h"

/* The redrive command: parses `argv` (argc entries after "redrive") and runs; returns the exit code. */
int pub_redrive_command(const pub_config *cfg, int argc, char **argv);

#endif
