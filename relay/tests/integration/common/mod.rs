//! A small test client: real QUIC, pinned relay certificate, the real protocol.
#![allow(dead_code)]

pub mod mls;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use hearth_protocol::auth::auth_message;
use hearth_protocol::frame::{decode_body, encode_frame};
use hearth_protocol::limits::{MAX_FRAME_LEN, TLS_EXPORTER_LABEL};
use hearth_protocol::{
    AccountKey, Cap, ClientFrame, ClientHello, Event, Handle, InviteToken, Pin, RelayAddress,
    Request, Response, ServerFrame, ServerHello, Signature, WireError, ALPN,
};
use hearth_relay::{RelayConfig, RunningRelay};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// Starts an in-process relay on 127.0.0.1:0 with a fresh temp data dir.
pub async fn start_relay(
    tweak: impl FnOnce(&mut RelayConfig),
) -> (RunningRelay, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = RelayConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        data_dir: dir.path().join("relay"),
        ..RelayConfig::default()
    };
    tweak(&mut config);
    let relay = hearth_relay::start(config).await.expect("relay starts");
    (relay, dir)
}

/// Checks the relay's certificate by its SPKI pin only (no CA, no names).
#[derive(Debug)]
struct PinVerifier {
    pin: Pin,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        if Pin::of_spki(parsed.subject_public_key_info().as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "relay key does not match the pin".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A QUIC connection to the relay with its one stream, before any hello.
pub struct Raw {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub exporter: [u8; 32],
}

pub async fn connect_raw(address: &RelayAddress) -> Raw {
    try_connect_raw(address).await.expect("connection accepted")
}

/// Connects; `None` when the relay refuses the connection.
pub async fn try_connect_raw(address: &RelayAddress) -> Option<Raw> {
    try_connect_raw_with(address, |_| {}).await
}

/// Connects with a tuned QUIC transport (e.g. tiny flow-control windows, for a client
/// that reads slowly or not at all); `None` when the relay refuses the connection.
pub async fn try_connect_raw_with(
    address: &RelayAddress,
    tweak: impl FnOnce(&mut quinn::TransportConfig),
) -> Option<Raw> {
    let endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("endpoint");
    try_connect_raw_on(endpoint, address, tweak).await
}

/// [`try_connect_raw_with`] from a given client endpoint.
pub async fn try_connect_raw_on(
    mut endpoint: quinn::Endpoint,
    address: &RelayAddress,
    tweak: impl FnOnce(&mut quinn::TransportConfig),
) -> Option<Raw> {
    let mut config = client_config(address);
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    tweak(&mut transport);
    config.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(config);
    let addr: SocketAddr = address.host_port().parse().expect("socket address");
    let conn = endpoint
        .connect(addr, "hearth-relay")
        .expect("connect")
        .await
        .ok()?;
    let mut exporter = [0u8; 32];
    conn.export_keying_material(&mut exporter, TLS_EXPORTER_LABEL, b"")
        .expect("exporter");
    let (send, recv) = conn.open_bi().await.ok()?;
    Some(Raw {
        endpoint,
        conn,
        send,
        recv,
        exporter,
    })
}

/// A UDP socket that can vanish: from [`Vanish::now`] on it sends nothing and drops
/// whatever arrives, as the socket of a process that was killed (no close, no answer).
#[derive(Debug)]
struct VanishingSocket {
    inner: Arc<dyn quinn::AsyncUdpSocket>,
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl quinn::AsyncUdpSocket for VanishingSocket {
    fn create_io_poller(self: Arc<Self>) -> std::pin::Pin<Box<dyn quinn::UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit<'_>) -> std::io::Result<()> {
        if self.gone.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut std::task::Context,
        bufs: &mut [std::io::IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            let polled = self.inner.poll_recv(cx, bufs, meta);
            match polled {
                std::task::Poll::Ready(Ok(_))
                    if self.gone.load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    continue
                }
                other => return other,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Makes a client made by [`Client::connect_vanishing`] vanish.
pub struct Vanish(Arc<std::sync::atomic::AtomicBool>);

impl Vanish {
    /// From now on the client's socket sends nothing and hears nothing.
    pub fn now(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A client endpoint on a socket that can vanish.
fn vanishing_endpoint() -> (quinn::Endpoint, Vanish) {
    use quinn::Runtime as _;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    let inner = quinn::TokioRuntime
        .wrap_udp_socket(socket)
        .expect("async socket");
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let socket = Arc::new(VanishingSocket {
        inner,
        gone: gone.clone(),
    });
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .expect("endpoint");
    (endpoint, Vanish(gone))
}

/// Completes a QUIC handshake only (no stream); `None` when the relay refuses it.
pub async fn handshake(address: &RelayAddress) -> Option<(quinn::Endpoint, quinn::Connection)> {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("endpoint");
    endpoint.set_default_client_config(client_config(address));
    let addr: SocketAddr = address.host_port().parse().expect("socket address");
    let conn = endpoint
        .connect(addr, "hearth-relay")
        .expect("connect")
        .await
        .ok()?;
    Some((endpoint, conn))
}

/// A QUIC client configuration that pins `address`'s key (also usable with quinn-proto
/// directly, to send packets by hand).
pub fn client_config(address: &RelayAddress) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier {
            pin: address.pin,
            provider,
        }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    quinn::ClientConfig::new(Arc::new(crypto))
}

/// Reads one frame body; `None` when the stream ended.
pub async fn read_body(recv: &mut quinn::RecvStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    assert!(len <= MAX_FRAME_LEN, "relay sent an oversized frame");
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// An account's key pair.
pub struct Identity {
    pub key: SigningKey,
}

impl Identity {
    pub fn new() -> Self {
        Self {
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    pub fn account(&self) -> AccountKey {
        AccountKey(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, challenge: &[u8; 32], exporter: &[u8; 32]) -> Signature {
        Signature(
            self.key
                .sign(&auth_message(challenge, exporter, &self.account()))
                .to_bytes(),
        )
    }
}

/// A client after a successful hello.
pub struct Client {
    pub raw: Raw,
    pub challenge: [u8; 32],
    /// This client's admin pseudonym key, the same for every room (a real client derives
    /// one per room; the relay cannot tell): set from the account it signs in as.
    pub admin: SigningKey,
    next_id: u32,
    events: VecDeque<Event>,
    responses: HashMap<u32, Result<Response, WireError>>,
    /// Admission tokens issued to this (signed-in) client and not spent yet, with their
    /// key (see [`Client::admit`]).
    spare_tokens: Vec<(
        hearth_protocol::AdmissionKey,
        hearth_protocol::AdmissionToken,
    )>,
}

impl Client {
    pub async fn connect(address: &RelayAddress) -> Client {
        Self::connect_with(address, |_| {}).await
    }

    /// [`Client::connect`] with a tuned QUIC transport (see [`try_connect_raw_with`]).
    pub async fn connect_with(
        address: &RelayAddress,
        tweak: impl FnOnce(&mut quinn::TransportConfig),
    ) -> Client {
        let raw = try_connect_raw_with(address, tweak)
            .await
            .expect("connection accepted");
        Self::hello(raw).await
    }

    /// [`Client::connect`] on a socket that vanishes when told (as a killed process's).
    pub async fn connect_vanishing(address: &RelayAddress) -> (Client, Vanish) {
        let (endpoint, vanish) = vanishing_endpoint();
        let raw = try_connect_raw_on(endpoint, address, |_| {})
            .await
            .expect("connection accepted");
        (Self::hello(raw).await, vanish)
    }

    async fn hello(mut raw: Raw) -> Client {
        let hello = encode_frame(
            &ClientHello {
                versions: vec![hearth_protocol::PROTOCOL_VERSION],
            },
            MAX_FRAME_LEN,
        )
        .expect("encode");
        raw.send.write_all(&hello).await.expect("send hello");
        let body = tokio::time::timeout(WAIT, read_body(&mut raw.recv))
            .await
            .expect("hello answer in time")
            .expect("hello answer");
        let challenge = match decode_body::<ServerHello>(&body).expect("server hello") {
            ServerHello::Accepted { challenge, .. } => challenge,
            other => panic!("hello rejected: {other:?}"),
        };
        Client {
            raw,
            challenge,
            admin: SigningKey::from_bytes(&[0xad; 32]),
            next_id: 1,
            events: VecDeque::new(),
            responses: HashMap::new(),
            spare_tokens: Vec::new(),
        }
    }

    /// This client's admin pseudonym.
    pub fn admin_key(&self) -> hearth_protocol::AdminKey {
        hearth_protocol::AdminKey(self.admin.verifying_key().to_bytes())
    }

    /// This client's admin signature over `action` in `room` at the epoch of `cap`.
    pub fn admin_proof(
        &self,
        room: hearth_protocol::RoomId,
        cap: &Cap,
        action: &hearth_protocol::AdminAction,
    ) -> hearth_protocol::AdminProof {
        let message = hearth_protocol::admin_message(&room, &cap.hash(), action);
        hearth_protocol::AdminProof {
            admin: self.admin_key(),
            signature: Signature(self.admin.sign(&message).to_bytes()),
        }
    }

    /// What the tests leave out of a request, filled in as an admin's client would: the
    /// admin pseudonym of a new room (given as all zeros) and this client's signature on
    /// a change that needs an admin (given as `None`; the relay then decides whether this
    /// client's pseudonym is one it lists). Register and Auth set the pseudonym from the
    /// account. [`Client::send_as_is`] sends without this.
    fn fill(&mut self, request: Request) -> Request {
        use hearth_protocol::{AdminAction, AdminKey};
        match request {
            Request::Register { account, .. } | Request::Auth { account, .. } => {
                let seed: [u8; 32] =
                    sha2::Sha256::digest([b"test admin".as_slice(), &account.0].concat()).into();
                self.admin = SigningKey::from_bytes(&seed);
                request
            }
            Request::CreateRoom {
                room,
                cap_hash,
                retention_secs,
                admin,
            } => Request::CreateRoom {
                room,
                cap_hash,
                retention_secs,
                admin: if admin == AdminKey([0; 32]) {
                    self.admin_key()
                } else {
                    admin
                },
            },
            Request::SetRetention {
                room,
                cap,
                retention_secs,
                proof: None,
            } => {
                let proof =
                    self.admin_proof(room, &cap, &AdminAction::SetRetention { retention_secs });
                Request::SetRetention {
                    room,
                    cap,
                    retention_secs,
                    proof: Some(proof),
                }
            }
            Request::PublishRoom {
                room,
                cap,
                public_name,
                group_info,
                epoch,
                proof: None,
            } => {
                let action = AdminAction::Publish {
                    public_name: public_name.clone(),
                    epoch,
                };
                let proof = self.admin_proof(room, &cap, &action);
                Request::PublishRoom {
                    room,
                    cap,
                    public_name,
                    group_info,
                    epoch,
                    proof: Some(proof),
                }
            }
            Request::UnpublishRoom {
                room,
                cap,
                proof: None,
            } => {
                let proof = self.admin_proof(room, &cap, &AdminAction::Unpublish);
                Request::UnpublishRoom {
                    room,
                    cap,
                    proof: Some(proof),
                }
            }
            Request::SetRoomAdmins {
                room,
                cap,
                admins,
                proof: None,
            } => {
                let action = AdminAction::SetAdmins {
                    admins: admins.clone(),
                };
                let proof = self.admin_proof(room, &cap, &action);
                Request::SetRoomAdmins {
                    room,
                    cap,
                    admins,
                    proof: Some(proof),
                }
            }
            other => other,
        }
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send(&mut self, request: Request) -> u32 {
        let request = self.fill(request);
        self.send_as_is(request).await
    }

    /// Sends a request as it is (see [`Client::send_as_is`]) and waits for its response.
    pub async fn send_and_wait_as_is(&mut self, request: Request) -> Result<Response, WireError> {
        let id = self.send_as_is(request).await;
        self.response(id).await
    }

    /// [`Client::send`] without filling anything in.
    pub async fn send_as_is(&mut self, request: Request) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = encode_frame(&ClientFrame { id, request }, MAX_FRAME_LEN).expect("encode");
        self.raw.send.write_all(&frame).await.expect("send");
        id
    }

    async fn read_one(&mut self) -> bool {
        let Ok(body) = tokio::time::timeout(WAIT, read_body(&mut self.raw.recv)).await else {
            panic!("relay did not answer in time");
        };
        let Some(body) = body else {
            return false;
        };
        match decode_body::<ServerFrame>(&body).expect("server frame") {
            ServerFrame::Response { id, result } => {
                self.responses.insert(id, result);
            }
            ServerFrame::Event(Event::Reauthenticate { challenge }) => {
                self.challenge = challenge;
                self.events.push_back(Event::Reauthenticate { challenge });
            }
            ServerFrame::Event(event) => self.events.push_back(event),
        }
        true
    }

    /// Waits for the response to request `id`; `None` if the connection ends first.
    pub async fn try_response(&mut self, id: u32) -> Option<Result<Response, WireError>> {
        loop {
            if let Some(r) = self.responses.remove(&id) {
                return Some(r);
            }
            if !self.read_one().await {
                return None;
            }
        }
    }

    /// Waits for the response to request `id`.
    pub async fn response(&mut self, id: u32) -> Result<Response, WireError> {
        loop {
            if let Some(r) = self.responses.remove(&id) {
                return r;
            }
            assert!(
                self.read_one().await,
                "connection closed before response {id}"
            );
        }
    }

    /// Sends a request and waits for its response.
    /// Creates `room` with `cap_hash` for epoch 0 and the relay's retention; panics on refusal.
    pub async fn create_room(
        &mut self,
        room: hearth_protocol::RoomId,
        cap_hash: hearth_protocol::CapHash,
    ) {
        self.request(Request::CreateRoom {
            room,
            cap_hash,
            retention_secs: None,
            admin: hearth_protocol::AdminKey([0; 32]),
        })
        .await
        .expect("the relay creates the room");
    }

    /// Appends `payload` to `room` with `cap`.
    pub async fn append(
        &mut self,
        room: hearth_protocol::RoomId,
        cap: hearth_protocol::Cap,
        payload: Vec<u8>,
    ) -> Result<Response, WireError> {
        self.request(Request::Append { room, cap, payload }).await
    }

    pub async fn request(&mut self, request: Request) -> Result<Response, WireError> {
        let id = self.send(request).await;
        self.response(id).await
    }

    /// The next pushed event.
    pub async fn event(&mut self) -> Event {
        loop {
            if let Some(e) = self.events.pop_front() {
                return e;
            }
            assert!(
                self.read_one().await,
                "connection closed while waiting for an event"
            );
        }
    }

    /// Events already received and not yet taken with [`Client::event`].
    pub fn pending_events(&self) -> &VecDeque<Event> {
        &self.events
    }

    /// Reads until the relay closes the stream; returns the responses seen.
    pub async fn until_closed(&mut self) -> Vec<Result<Response, WireError>> {
        while self.read_one().await {}
        self.responses.drain().map(|(_, r)| r).collect()
    }

    pub async fn register(
        &mut self,
        id: &Identity,
        invite: Option<InviteToken>,
        handle: &str,
    ) -> Result<Response, WireError> {
        let signature = id.sign(&self.challenge, &self.raw.exporter);
        self.request(Request::Register {
            invite,
            handle: Handle::new(handle).expect("valid handle"),
            account: id.account(),
            signature,
        })
        .await
    }

    pub async fn auth(&mut self, id: &Identity) -> Result<Response, WireError> {
        let signature = id.sign(&self.challenge, &self.raw.exporter);
        self.request(Request::Auth {
            account: id.account(),
            signature,
        })
        .await
    }
}

impl Client {
    /// Admits this connection (one that never signs in) to room requests with a token
    /// issued to `issuer`'s signed-in connection (decision 0016), as hearth's client does.
    pub async fn admit(&mut self, issuer: &mut Client) {
        let key = match self.request(Request::AdmissionKey).await {
            Ok(Response::AdmissionKey(key)) => key,
            other => panic!("admission key: {other:?}"),
        };
        let token = issuer.admission_token(key).await;
        self.request(Request::Admit { key, token })
            .await
            .expect("admitted");
    }

    /// One unspent token of `key` issued to this signed-in client (a batch at a time).
    pub async fn admission_token(
        &mut self,
        key: hearth_protocol::AdmissionKey,
    ) -> hearth_protocol::AdmissionToken {
        self.spare_tokens.retain(|(k, _)| *k == key);
        if self.spare_tokens.is_empty() {
            let batch = admission_tokens(self, key).await;
            self.spare_tokens = batch.into_iter().map(|t| (key, t)).collect();
        }
        self.spare_tokens.pop().expect("a batch").1
    }

    /// A connection that never signs in, admitted to room requests with a token issued to
    /// `issuer` (see [`Client::admit`]).
    pub async fn room_connection(address: &RelayAddress, issuer: &mut Client) -> Client {
        let mut link = Client::connect(address).await;
        link.admit(issuer).await;
        link
    }
}

/// A batch of admission tokens of `key` issued to `issuer`'s signed-in connection, the
/// proof checked (RFC 9497 VOPRF, `ristretto255-SHA512`).
pub async fn admission_tokens(
    issuer: &mut Client,
    key: hearth_protocol::AdmissionKey,
) -> Vec<hearth_protocol::AdmissionToken> {
    use voprf::{Group, Ristretto255, VoprfClient};
    let inputs: Vec<[u8; 32]> = (0..hearth_protocol::ADMISSION_BATCH)
        .map(|_| {
            let mut input = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut input);
            input
        })
        .collect();
    let blinds: Vec<_> = inputs
        .iter()
        .map(|i| VoprfClient::<Ristretto255>::blind(i, &mut rand_core::OsRng).expect("blind"))
        .collect();
    let blinded = blinds
        .iter()
        .map(|b| hearth_protocol::BlindedToken(b.message.serialize().into()))
        .collect();
    let (evaluated, proof) = match issuer
        .request(Request::IssueAdmission { key, blinded })
        .await
    {
        Ok(Response::AdmissionIssued { evaluated, proof }) => (evaluated, proof),
        other => panic!("admission tokens: {other:?}"),
    };
    let states: Vec<_> = blinds.iter().map(|b| b.state.clone()).collect();
    let messages: Vec<_> = evaluated
        .iter()
        .map(|e| voprf::EvaluationElement::<Ristretto255>::deserialize(&e.0).expect("point"))
        .collect();
    let proof = voprf::Proof::<Ristretto255>::deserialize(&proof.0).expect("proof");
    let public = Ristretto255::deserialize_elem(&key.0).expect("key");
    let outputs = VoprfClient::batch_finalize(&inputs, &states, &messages, &proof, public)
        .expect("the proof verifies");
    inputs
        .iter()
        .zip(outputs)
        .map(|(input, output)| hearth_protocol::AdmissionToken {
            input: *input,
            output: output.expect("finalized").into(),
        })
        .collect()
}

/// Registers a fresh account on `relay` and returns its authenticated client.
pub async fn new_account(relay: &RunningRelay, handle: &str) -> (Client, Identity) {
    let token = relay.relay().mint_invite(1, None).expect("invite");
    let id = Identity::new();
    let mut client = Client::connect(&relay.address()).await;
    client
        .register(&id, Some(token), handle)
        .await
        .expect("registration");
    (client, id)
}

/// A capability for tests.
pub fn cap(n: u8) -> Cap {
    Cap([n; 32])
}

/// Waits until `done` holds, checking whenever the runtime gets round to it; panics
/// after [`WAIT`]. For state the relay changes in the background (a gauge going back to
/// zero after a connection closed) that no event announces.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How the relay closed a connection: its application close code and reason.
pub async fn close_of(conn: &quinn::Connection) -> (u32, String) {
    match tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("the relay closes the connection in time")
    {
        quinn::ConnectionError::ApplicationClosed(close) => (
            u32::try_from(u64::from(close.error_code)).expect("small code"),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("closed otherwise: {other:?}"),
    }
}

/// Test payloads are tagged so order can be checked.
pub fn payload(tag: u32, len: usize) -> Vec<u8> {
    let mut p = tag.to_be_bytes().to_vec();
    p.resize(len.max(4), 0xab);
    p
}

/// Reads the tag of [`payload`].
pub fn tag(payload: &[u8]) -> u32 {
    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
}

/// Bans `handle` through the admin socket (which also replaces the relay's admission key,
/// decision 0016); asserts the account is banned.
pub async fn ban(relay: &hearth_relay::RunningRelay, handle: &str) {
    let config = relay.relay().config().clone();
    let response = hearth_relay::admin::request(
        &config,
        hearth_relay::admin::AdminRequest::Ban {
            handle: hearth_protocol::Handle::new(handle).unwrap(),
        },
    )
    .await
    .unwrap();
    assert!(matches!(response, hearth_relay::admin::AdminResponse::Account(ref a) if a.banned));
}
