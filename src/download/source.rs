//! Peers from trackers: the engine's [`PeerSource`] backed by BEP 12 tracker tiers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context;

use crate::download::engine::{AnnounceEvent, PeerList, PeerSource};
use crate::tracker::{AnnounceRequest, Event, Tiers, TrackerConfig, TrackerObserver};

/// Announces to a torrent's trackers, plus any peers given by hand (`--peer`, magnet `x.pe`).
pub struct TrackerSource {
    pub tiers: Tiers,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub config: TrackerConfig,
    pub observer: Box<dyn TrackerObserver>,
    pub extra_peers: Vec<SocketAddr>,
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
            extra_peers: Vec::new(),
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
            let mut peers = self.extra_peers.clone();
            let no_trackers = self.tiers.tiers().is_empty();
            let interval = if no_trackers {
                Duration::from_secs(30)
            } else {
                match self.announce_once(ev, downloaded, uploaded, left).await {
                    Ok((_, resp)) => {
                        peers.extend(resp.peers);
                        Duration::from_secs(u64::from(resp.interval.max(5)))
                    }
                    // with peers given by hand, a failing tracker is only a warning
                    Err(e) if !peers.is_empty() => {
                        tracing::warn!("{e:#}");
                        Duration::from_secs(30)
                    }
                    Err(e) => return Err(e),
                }
            };
            Ok(PeerList { peers, interval })
        })
    }
}
