//! Peers from trackers: the engine's [`PeerSource`] backed by BEP 12 tracker tiers.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context;

use crate::download::engine::{AnnounceEvent, PeerList, PeerSource};
use crate::tracker::{AnnounceRequest, Event, Tiers, TrackerConfig, TrackerObserver};

/// Announces to a torrent's trackers. With no tracker it returns no peers (the engine has
/// the peers given by hand, `--peer` and a magnet's `x.pe`, from its options).
pub struct TrackerSource {
    pub tiers: Tiers,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub config: TrackerConfig,
    pub observer: Box<dyn TrackerObserver>,
    key: u32,
}

impl TrackerSource {
    pub fn new(tiers: Tiers, info_hash: [u8; 20], peer_id: [u8; 20], port: u16) -> Self {
        TrackerSource {
            tiers,
            info_hash,
            peer_id,
            port,
            config: TrackerConfig::default(),
            observer: Box::new(crate::tracker::NoopObserver),
            key: rand::random(),
        }
    }

    /// One announce through the tiers.
    pub async fn announce_once(
        &mut self,
        event: Event,
        downloaded: u64,
        uploaded: u64,
        left: u64,
    ) -> anyhow::Result<(String, crate::tracker::AnnounceResponse)> {
        let req = AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            port: self.port,
            uploaded,
            downloaded,
            left,
            event,
            numwant: Some(200),
            key: self.key,
        };
        let (url, resp) = self
            .tiers
            .announce(&req, &self.config, &mut self.observer)
            .await
            .context("announcing to the tracker")?;
        if let Some(w) = &resp.warning {
            tracing::warn!("tracker {url} says: {w}");
        }
        Ok((url, resp))
    }
}

impl PeerSource for TrackerSource {
    fn announce(
        &mut self,
        event: AnnounceEvent,
        downloaded: u64,
        uploaded: u64,
        left: u64,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<PeerList>> + Send + '_>> {
        Box::pin(async move {
            let ev = match event {
                AnnounceEvent::Started => Event::Started,
                AnnounceEvent::Periodic => Event::None,
                AnnounceEvent::Completed => Event::Completed,
                AnnounceEvent::Stopped => Event::Stopped,
            };
            if self.tiers.tiers().is_empty() {
                return Ok(PeerList {
                    peers: Vec::new(),
                    interval: Duration::from_secs(1800),
                });
            }
            let (url, resp) = self.announce_once(ev, downloaded, uploaded, left).await?;
            // a seed (`left` 0) waits for leechers: no peers is normal for it
            if resp.peers.is_empty() && event == AnnounceEvent::Started && left > 0 {
                tracing::warn!("the tracker {url} returned no peers yet; will ask again");
            }
            let interval = Duration::from_secs(u64::from(resp.interval.max(5)));
            let peers = resp.peers;
            Ok(PeerList { peers, interval })
        })
    }
}
