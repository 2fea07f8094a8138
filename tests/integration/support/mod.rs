//! Harnesses the tests share: real peers (brokers) started on free loopback ports in
//! process groups of their own, stopped by their pid when the test ends.

pub mod exim;
pub mod group;
pub mod mosquitto;
pub mod named;
pub mod nats;
pub mod podman;
pub mod rabbitmq;
pub mod service_mock;

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A tokio runtime for a client the test drives.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
