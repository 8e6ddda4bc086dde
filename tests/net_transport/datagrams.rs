//! `max_udp_payload`: larger datagrams where the path carries them, and
//! values QUIC cannot use refused at bind.

use super::{echo_node, id, keys, localhost, test_config};
use hologram::lattice::transport::{Handler, Protocol, Transport};
use hologram::net::{AddressBook, NetError, QuicTransport};
use std::sync::Arc;
use std::time::Duration;

/// Two nodes allowing 6,500-byte datagrams (which loopback carries) pass
/// 1 MiB requests and answers whole, while MTU discovery raises the
/// datagram size under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_datagrams_carry_large_frames() {
    let mut config = test_config();
    config.max_frame = 2 << 20;
    config.max_udp_payload = 6_500;
    let book = AddressBook::new();
    let (a, _) = echo_node(1, &book, config.clone());
    let (_b, _) = echo_node(2, &book, config);
    for i in 0..20u8 {
        let payload = vec![i; 1 << 20];
        let answer = a
            .request(
                id(2),
                Protocol::PING,
                payload.clone(),
                Duration::from_secs(10),
            )
            .await
            .expect("a 1 MiB request answered");
        assert_eq!(answer.len(), 32 + payload.len());
        assert_eq!(&answer[32..], &payload[..]);
    }
}

#[tokio::test]
async fn a_udp_payload_quic_cannot_use_is_refused_at_bind() {
    for bad in [0, 1199, 65528, u16::MAX] {
        let mut config = test_config();
        config.max_udp_payload = bad;
        let handler = Arc::new(super::Echo::default()) as Arc<dyn Handler>;
        let bound = QuicTransport::bind(&keys(1), localhost(), handler, AddressBook::new(), config);
        match bound {
            Err(NetError::Config(why)) => assert!(why.contains("max_udp_payload"), "{why}"),
            Err(other) => panic!("max_udp_payload {bad}: {other}"),
            Ok(_) => panic!("max_udp_payload {bad} was accepted"),
        }
    }
}
