//! The media plane.
//!
//! Owns the SFU shards: one OS thread per shard, each with its own UDP socket, so that nothing on the
//! packet path is shared between cores. This crate knows nothing about users, classes or GraphQL; the
//! gateway talks to it through the [`Sfu`] handle.
//!
//! Today a shard owns its socket and accounts for every datagram it receives; with no peers yet, each
//! one is dropped and counted as addressed to an unknown peer. Peer connections, rooms and forwarding
//! are built on top of this driver.

pub mod media;
mod shard;

pub use shard::{ShardStats, ShardStatus};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use shard::ShardHandle;

/// How to start the shards.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Number of shards (threads, each with one UDP port). At least 1.
    pub shards: usize,
    /// Address the shards' UDP sockets bind to.
    pub bind_address: IpAddr,
    /// First UDP port; shard `i` binds `udp_port_start + i`. 0 lets the OS pick a free port per shard.
    pub udp_port_start: u16,
    /// Address announced in ICE host candidates (the public address in a real deployment).
    pub ice_address: IpAddr,
}

/// Why the SFU could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("the SFU needs at least one shard")]
    NoShards,
    #[error("shard {index}: UDP port {port} is beyond 65535")]
    PortOutOfRange { index: usize, port: u32 },
    #[error("shard {index}: cannot bind UDP {addr}: {source}")]
    Bind {
        index: usize,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("shard {index}: cannot start its thread: {source}")]
    Spawn {
        index: usize,
        #[source]
        source: std::io::Error,
    },
}

/// Handle to the running shards. Cheap to clone; the shards stop on [`Sfu::shutdown`].
#[derive(Clone)]
pub struct Sfu {
    inner: Arc<Inner>,
}

struct Inner {
    config: SfuConfig,
    shards: Vec<ShardHandle>,
}

impl Sfu {
    /// Binds every shard's socket and starts its thread. On error, the shards already started are
    /// stopped again before returning.
    pub fn start(config: SfuConfig) -> Result<Sfu, StartError> {
        if config.shards == 0 {
            return Err(StartError::NoShards);
        }
        let mut shards = Vec::with_capacity(config.shards);
        for index in 0..config.shards {
            let port = if config.udp_port_start == 0 {
                0
            } else {
                let port = u32::from(config.udp_port_start) + index as u32;
                if port > u32::from(u16::MAX) {
                    stop_all(&shards);
                    return Err(StartError::PortOutOfRange { index, port });
                }
                port as u16
            };
            match ShardHandle::spawn(index, SocketAddr::new(config.bind_address, port)) {
                Ok(shard) => shards.push(shard),
                Err(e) => {
                    stop_all(&shards);
                    return Err(e);
                }
            }
        }
        tracing::info!(
            shards = shards.len(),
            ports = ?shards.iter().map(|s| s.local_addr().port()).collect::<Vec<_>>(),
            ice_address = %config.ice_address,
            "SFU shards started"
        );
        Ok(Sfu {
            inner: Arc::new(Inner { config, shards }),
        })
    }

    /// The configuration the SFU runs with.
    pub fn config(&self) -> &SfuConfig {
        &self.inner.config
    }

    /// State and counters of every shard, in shard order.
    pub fn shards(&self) -> Vec<ShardStatus> {
        self.inner.shards.iter().map(ShardHandle::status).collect()
    }

    /// True when every shard's thread is alive and serving its socket.
    pub fn all_running(&self) -> bool {
        self.inner.shards.iter().all(ShardHandle::is_running)
    }

    /// Stops every shard and waits for its thread to end. Blocking: call it from a blocking context.
    /// Idempotent.
    pub fn shutdown(&self) {
        stop_all(&self.inner.shards);
    }
}

fn stop_all(shards: &[ShardHandle]) {
    for shard in shards {
        shard.request_stop();
    }
    for shard in shards {
        shard.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};

    fn loopback_config(shards: usize) -> SfuConfig {
        SfuConfig {
            shards,
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            udp_port_start: 0,
            ice_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    #[test]
    fn sfu_handle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Sfu>();
    }

    #[test]
    fn zero_shards_is_refused() {
        assert!(matches!(
            Sfu::start(loopback_config(0)),
            Err(StartError::NoShards)
        ));
    }

    #[test]
    fn each_shard_binds_its_own_port_and_stops_on_shutdown() {
        let sfu = Sfu::start(loopback_config(3)).expect("start");
        let shards = sfu.shards();
        assert_eq!(shards.len(), 3);
        let mut ports: Vec<u16> = shards.iter().map(|s| s.local_addr.port()).collect();
        ports.dedup();
        assert_eq!(ports.len(), 3, "ports must differ: {ports:?}");
        assert!(shards.iter().all(|s| s.running));
        assert!(sfu.all_running());

        sfu.shutdown();
        assert!(!sfu.all_running());
        assert!(sfu.shards().iter().all(|s| !s.running));
        // A second shutdown is harmless.
        sfu.shutdown();
    }

    #[test]
    fn datagrams_for_unknown_peers_are_counted_and_dropped() {
        let sfu = Sfu::start(loopback_config(1)).expect("start");
        let target = sfu.shards()[0].local_addr;
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for len in [1usize, 12, 200] {
            client.send_to(&vec![0x80; len], target).unwrap();
        }
        // Shutting down drains: the stop request is queued behind the three datagrams on the same
        // socket, so the shard has read all three before it stops.
        sfu.shutdown();
        let stats = sfu.shards()[0].stats;
        assert_eq!(stats.packets_received, 3);
        assert_eq!(stats.bytes_received, 213);
        assert_eq!(stats.packets_dropped_unknown_peer, 3);
    }

    #[test]
    fn a_taken_port_is_reported_with_the_shard_and_address() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut config = loopback_config(2);
        config.udp_port_start = taken.local_addr().unwrap().port();
        match Sfu::start(config) {
            Err(StartError::Bind { index: 0, addr, .. }) => {
                assert_eq!(addr, taken.local_addr().unwrap())
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("binding a taken port must fail"),
        }
    }
}
