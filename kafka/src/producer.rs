//! Producing: an idempotent producer (at-least-once, no duplicates from retries) that
//! can also run transactions (read-process-write, exactly-once) when the broker supports
//! them. `send` blocks until every record is acknowledged and returns its offset.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::{Delivery, KafkaConfig};
use crate::error::{Error, Result};

/// One record to produce.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutRecord<'a> {
    /// Partition; `None` = by key with Kafka's murmur2 partitioner (random when no key).
    pub partition: Option<u32>,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub value: &'a [u8],
    /// Headers (name, value).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Send a null value (a tombstone: compaction deletes the key); `value` is ignored.
    pub tombstone: bool,
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: u64,
}

/// A record's delivery outcome (`None` until reported).
type Slot = Option<std::result::Result<Delivered, String>>;

#[derive(Default)]
struct Batch {
    state: Mutex<(usize, Vec<Slot>)>,
    done: Condvar,
}

/// Per-record delivery handle (internal).
#[doc(hidden)]
pub struct Pending {
    batch: Arc<Batch>,
    index: usize,
}

/// Producer context collecting delivery reports (internal).
#[doc(hidden)]
pub struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        let r = match result {
            Ok(m) => Ok(Delivered {
                partition: m.partition() as u32,
                offset: m.offset() as u64,
            }),
            Err((e, _)) => Err(e.to_string()),
        };
        let mut st = match pending.batch.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(slot) = st.1.get_mut(pending.index) {
            *slot = Some(r);
        }
        st.0 = st.0.saturating_sub(1);
        if st.0 == 0 {
            pending.batch.done.notify_all();
        }
    }
}

/// Idempotent (and optionally transactional) producer.
pub struct Producer {
    inner: ThreadedProducer<DeliveryContext>,
    transactional: bool,
    timeout: Duration,
}

impl Producer {
    /// An idempotent producer: `enable.idempotence=true`, `acks=all`, murmur2 partitioner.
    pub fn idempotent(config: &KafkaConfig) -> Result<Producer> {
        Self::build(config, None)
    }

    /// A transactional producer with `transactional_id` (one per instance and input
    /// partition set, stable across restarts so a restarted instance fences its zombie).
    /// Fails if the broker does not support transactions.
    pub fn transactional(config: &KafkaConfig, transactional_id: &str) -> Result<Producer> {
        Self::build(config, Some(transactional_id))
    }

    /// The producer the config's [`Delivery`] asks for: for `Auto`, transactional when
    /// the broker supports it (detected by `InitProducerId`), else idempotent.
    pub fn for_delivery(config: &KafkaConfig, transactional_id: &str) -> Result<Producer> {
        match config.delivery {
            Delivery::AtLeastOnce => Self::idempotent(config),
            Delivery::ExactlyOnce => Self::transactional(config, transactional_id),
            Delivery::Auto => match Self::transactional(config, transactional_id) {
                Ok(p) => Ok(p),
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka transactions unavailable; using idempotent at-least-once delivery");
                    Self::idempotent(config)
                }
            },
        }
    }

    fn build(config: &KafkaConfig, transactional_id: Option<&str>) -> Result<Producer> {
        config.validate()?;
        let mut c = config.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                (config.request_timeout.as_millis() * 3).to_string(),
            );
        if let Some(id) = transactional_id {
            c.set("transactional.id", id)
                .set("transaction.timeout.ms", "60000");
        }
        let inner: ThreadedProducer<DeliveryContext> = c.create_with_context(DeliveryContext)?;
        let p = Producer {
            inner,
            transactional: transactional_id.is_some(),
            timeout: config.request_timeout,
        };
        if p.transactional {
            p.inner.init_transactions(config.request_timeout)?;
            p.probe_transactions(config)?;
        }
        Ok(p)
    }

    /// Some brokers grant a transactional producer id but lack the rest of the protocol
    /// (tansu 0.6: no `EndTxn`), so run one real transaction: a tombstone for key
    /// `weir-txn-probe` in the compacted checkpoints topic (harmless there).
    fn probe_transactions(&self, config: &KafkaConfig) -> Result<()> {
        let topic = config.checkpoints_topic();
        crate::admin::Admin::new(config)?.create_topic(&topic, config.default_partitions, true)?;
        self.inner.begin_transaction()?;
        let r = self
            .send(
                &topic,
                &[OutRecord {
                    partition: Some(0),
                    key: Some(b"weir-txn-probe"),
                    tombstone: true,
                    ..Default::default()
                }],
            )
            .and_then(|_| Ok(self.inner.commit_transaction(self.timeout)?));
        if let Err(e) = r {
            let _ = self.inner.abort_transaction(self.timeout);
            return Err(Error::Config(format!(
                "broker does not support transactions: {e}"
            )));
        }
        Ok(())
    }

    /// True when this producer runs transactions.
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// Produces `records` to `topic` and waits until all are acknowledged (or failed).
    /// Order within a partition is the slice order (idempotence keeps it on retries).
    pub fn send(&self, topic: &str, records: &[OutRecord<'_>]) -> Result<Vec<Delivered>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let batch = Arc::new(Batch::default());
        {
            let mut st = lock(&batch.state);
            st.0 = records.len();
            st.1 = vec![None; records.len()];
        }
        for (index, r) in records.iter().enumerate() {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(*v),
                });
            }
            let mut rec: BaseRecord<'_, [u8], [u8], Box<Pending>> = BaseRecord::with_opaque_to(
                topic,
                Box::new(Pending {
                    batch: batch.clone(),
                    index,
                }),
            )
            .headers(headers);
            if !r.tombstone {
                rec = rec.payload(r.value);
            }
            if let Some(k) = r.key {
                rec = rec.key(k);
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p as i32);
            }
            let deadline = Instant::now() + self.timeout;
            loop {
                match self.inner.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        // Records already queued still report; wait so none is left dangling.
                        let mut st = lock(&batch.state);
                        st.0 -= records.len() - index;
                        drop(st);
                        self.wait(&batch)?;
                        return Err(e.into());
                    }
                }
            }
        }
        let results = self.wait(&batch)?;
        results
            .into_iter()
            .map(|r| match r {
                Some(Ok(d)) => Ok(d),
                Some(Err(e)) => Err(Error::Config(format!("delivery to {topic} failed: {e}"))),
                None => Err(Error::Timeout(format!("delivery to {topic}"))),
            })
            .collect()
    }

    fn wait(&self, batch: &Batch) -> Result<Vec<Slot>> {
        // message.timeout.ms bounds every report; allow it plus slack.
        let deadline = Instant::now() + self.timeout * 4;
        let mut st = lock(&batch.state);
        while st.0 > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout("waiting for delivery reports".into()));
            }
            st = match batch.done.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        Ok(std::mem::take(&mut st.1))
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Result<()> {
        self.require_txn()?;
        Ok(self.inner.begin_transaction()?)
    }

    /// Adds consumed input offsets (next offset to read, per partition) to the open
    /// transaction, so they commit atomically with the produced records.
    pub fn send_offsets(
        &self,
        offsets: &[(&str, u32, u64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        self.require_txn()?;
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in offsets {
            tpl.add_partition_offset(t, *p as i32, Offset::Offset(*o as i64))?;
        }
        Ok(self
            .inner
            .send_offsets_to_transaction(&tpl, group, self.timeout)?)
    }

    /// Commits the open transaction.
    pub fn commit(&self) -> Result<()> {
        self.require_txn()?;
        Ok(self.inner.commit_transaction(self.timeout)?)
    }

    /// Aborts the open transaction (its records are never visible to read_committed
    /// consumers).
    pub fn abort(&self) -> Result<()> {
        self.require_txn()?;
        Ok(self.inner.abort_transaction(self.timeout)?)
    }

    /// Waits until everything queued is delivered.
    pub fn flush(&self) -> Result<()> {
        Ok(self.inner.flush(self.timeout)?)
    }

    fn require_txn(&self) -> Result<()> {
        if self.transactional {
            Ok(())
        } else {
            Err(Error::Config("producer is not transactional".into()))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
