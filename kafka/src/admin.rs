//! Topic administration: creating stream topics and weir's own topics.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{validate_topic, KafkaConfig};
use crate::error::{Error, Result};

/// Admin client: creates topics, reads partition counts.
pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    config: KafkaConfig,
}

impl Admin {
    /// Connects (lazily: the first request does).
    pub fn new(config: &KafkaConfig) -> Result<Admin> {
        config.validate()?;
        let client = config.base().create()?;
        Ok(Admin {
            client,
            config: config.clone(),
        })
    }

    /// Creates `name` with `partitions` partitions (replication: the config's) and, when `compacted`,
    /// `cleanup.policy=compact`. An existing topic is left as it is (its partition count
    /// is returned so callers can tell a mismatch).
    pub fn create_topic(&self, name: &str, partitions: u32, compacted: bool) -> Result<u32> {
        validate_topic(name)?;
        if partitions == 0 || partitions > 100_000 {
            return Err(Error::Config(format!(
                "topic {name}: partitions must be 1..=100000"
            )));
        }
        if let Ok(n) = self.partitions(name) {
            return Ok(n);
        }
        let mut topic = NewTopic::new(
            name,
            partitions as i32,
            TopicReplication::Fixed(self.config.replication),
        );
        if compacted {
            topic = topic.set("cleanup.policy", "compact");
        }
        let opts = AdminOptions::new().operation_timeout(Some(self.config.request_timeout));
        let results = futures_executor::block_on(self.client.create_topics([&topic], &opts))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(Error::Config(format!("creating topic {t}: {code}")));
                }
            }
        }
        // Metadata may lag the creation by a moment.
        let deadline = std::time::Instant::now() + self.config.request_timeout;
        loop {
            match self.partitions(name) {
                Ok(n) => return Ok(n),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }

    /// Creates the statements, outputs and checkpoints topics if missing.
    pub fn ensure_weir_topics(&self) -> Result<()> {
        let c = &self.config;
        self.create_topic(&c.statements_topic(), 1, true)?;
        // One partition: its offsets are the cursors of `GET /v1/outputs`.
        self.create_topic(&c.outputs_topic(), 1, false)?;
        self.create_topic(&c.checkpoints_topic(), c.default_partitions, true)?;
        Ok(())
    }

    /// Number of partitions of an existing topic.
    pub fn partitions(&self, name: &str) -> Result<u32> {
        let md = self
            .client
            .inner()
            .fetch_metadata(Some(name), self.config.request_timeout)?;
        match md.topics().iter().find(|t| t.name() == name) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().len() as u32)
            }
            _ => Err(Error::Unknown(name.to_string())),
        }
    }

    /// Deletes topics (tests and operators' clean-up).
    pub fn delete_topics(&self, names: &[&str]) -> Result<()> {
        let opts = AdminOptions::new().operation_timeout(Some(self.config.request_timeout));
        let results = futures_executor::block_on(self.client.delete_topics(names, &opts))?;
        for r in results {
            if let Err((t, code)) = r {
                if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                    return Err(Error::Config(format!("deleting topic {t}: {code}")));
                }
            }
        }
        Ok(())
    }
}
