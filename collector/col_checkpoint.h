/*
 * col_checkpoint: the collector's position (certsync.v1.CollectorCheckpoint) in the checkpoint topic.
 *
 * The checkpoint topic is compacted with key = source id; the record with the highest offset for the key is
 * the position. It is written only inside the same Kafka transaction as the events it covers, so a
 * read_committed load sees a checkpoint exactly when it sees those events.
 *
 * Fence first, then read (design.md): a zombie collector with the same transactional.id may still commit a
 * transaction until the new producer's init_transactions has fenced it and aborted its open transaction.
 * col_checkpoint_load() therefore takes the producer and refuses to read unless init is done.
 */
#ifndef COL_CHECKPOINT_H
#define COL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "certsync/v1/collector_checkpoint.pb-c.h"
#include "cs_err.h"
#include "cs_kafka_producer.h"

/* Largest checkpoint accepted: cookies are small (DirSync's is a few hundred bytes). */
#define COL_CHECKPOINT_MAX_BYTES (256u * 1024u)

/*
 * Loads the newest committed checkpoint of `source_id` from `topic`, read_committed up to the last stable
 * offset. `fenced_by` is the collector's transactional producer: it must have finished init_transactions
 * (state ready or later), otherwise CS_ERR_STATE and nothing is read. `conf` (bootstrap and TLS settings)
 * is taken over in every case. On success *out is the checkpoint, or NULL when the source has none yet
 * (first start); caller frees with col_checkpoint_free(). A record that does not decode, or that names
 * another source, is an error naming the offset: the position must never be guessed.
 */
cs_err *col_checkpoint_load(rd_kafka_conf_t *conf, const char *topic, const char *source_id,
                            const cs_kafka_producer *fenced_by, int timeout_ms,
                            Certsync__V1__CollectorCheckpoint **out);

/* Encodes a checkpoint. Caller frees *out with free(). */
cs_err *col_checkpoint_encode(const Certsync__V1__CollectorCheckpoint *cp, uint8_t **out, size_t *out_len);

/* Decodes and checks a checkpoint (size, source id present). Caller frees *out with col_checkpoint_free(). */
cs_err *col_checkpoint_decode(const void *data, size_t len, Certsync__V1__CollectorCheckpoint **out);

/* A deep copy (through encode/decode). Caller frees *out with col_checkpoint_free(). */
cs_err *col_checkpoint_copy(const Certsync__V1__CollectorCheckpoint *cp,
                            Certsync__V1__CollectorCheckpoint **out);

/* Frees a checkpoint returned by this module. NULL is allowed. */
void col_checkpoint_free(Certsync__V1__CollectorCheckpoint *cp);

#endif
