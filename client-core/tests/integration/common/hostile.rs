//! Hostile clients: a registered account's own profile driven directly with openmls and
//! raw relay requests over the real transport, with none of hearth's checks (the way an
//! insider's modified client behaves).

use std::sync::Arc;

use hearth_core::mls::{create_config, Engine, RoomSettings};
use hearth_core::transport::quic::QuicConnector;
use hearth_core::transport::{Connector, Link};
use hearth_core::Profile;
use hearth_protocol::auth::auth_message;
use hearth_protocol::{Event, Handle, Request, Response, RoomId, WireError};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{User, PASS};

/// What the relay's capability becomes when a hostile commit is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapAfter {
    /// The cap the commit really exports (what an honest committer sends).
    Exported,
    /// The current one, kept (so members who refuse the commit keep access).
    Kept,
    /// One nobody else can derive (to lock the others out).
    Foreign,
}

pub struct Hostile {
    pub profile: Profile,
    pub engine: Engine,
    link: Arc<dyn Link>,
    _events: UnboundedReceiver<Event>,
}

impl Hostile {
    /// Takes over `user`'s profile: the honest client is closed and the same identity
    /// connects again to the real relay.
    pub async fn take_over(user: &mut User) -> Hostile {
        if let Some(client) = user.client.take() {
            client.close().await;
        }
        let profile = Profile::open(&user.dir, PASS).unwrap();
        let engine = Engine::load(
            profile.identity().mls_signer(),
            profile.handle().as_str(),
            profile.store(),
        )
        .unwrap();
        let conn = QuicConnector::new(profile.relay().clone())
            .connect()
            .await
            .unwrap();
        let account = profile.account();
        let signature =
            profile
                .identity()
                .sign(&auth_message(&conn.challenge, &conn.exporter, &account));
        let link = conn.link.clone();
        match link
            .call(Request::Auth { account, signature })
            .await
            .unwrap()
        {
            Ok(Response::Authenticated { .. }) => {}
            other => panic!("hostile client could not authenticate: {other:?}"),
        }
        Hostile {
            profile,
            engine,
            link,
            _events: conn.events,
        }
    }

    pub async fn call(&self, request: Request) -> Result<Response, WireError> {
        self.link.call(request).await.expect("connection alive")
    }

    /// The account's group state of a room, as its honest client left it.
    pub fn group(&self, room: RoomId) -> MlsGroup {
        MlsGroup::load(
            self.engine.provider.storage(),
            &GroupId::from_slice(&room.0),
        )
        .unwrap()
        .expect("a member of the room")
    }

    /// Our credential under another handle, with our own key.
    pub fn credential_as(&self, handle: &str) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(handle.as_bytes().to_vec()).into(),
            signature_key: self.engine.signer.public().into(),
        }
    }

    /// Sends the commit `group` holds pending through the relay with the current
    /// epoch's capability, as a member would; then merges it locally.
    pub async fn send_commit(
        &self,
        room: RoomId,
        group: &mut MlsGroup,
        commit: &MlsMessageOut,
        after: CapAfter,
    ) -> Result<Response, WireError> {
        let cap = self.engine.cap(group).unwrap();
        let next_cap_hash = match after {
            CapAfter::Exported => self
                .engine
                .next_cap(group.pending_commit().unwrap(), &room.0)
                .unwrap()
                .hash(),
            CapAfter::Kept => cap.hash(),
            CapAfter::Foreign => hearth_protocol::Cap([0x66; 32]).hash(),
        };
        let result = self
            .call(Request::Commit {
                room,
                cap,
                next_cap_hash,
                payload: commit.to_bytes().unwrap(),
                admins: None,
            })
            .await;
        if result.is_ok() {
            group.merge_pending_commit(&self.engine.provider).unwrap();
        }
        result
    }

    /// Fetches `handle`'s KeyPackage from the relay's directory (consuming it).
    pub async fn key_package(&self, handle: &str) -> KeyPackage {
        let Ok(Response::KeyPackage { package, .. }) = self
            .call(Request::FetchKeyPackage {
                handle: Handle::new(handle).unwrap(),
            })
            .await
        else {
            panic!("no key package for {handle}");
        };
        KeyPackageIn::tls_deserialize_exact(package.as_slice())
            .unwrap()
            .validate(self.engine.provider.crypto(), ProtocolVersion::Mls10)
            .unwrap()
    }

    /// Creates a room on the relay whose group calls us `as_handle`, with `settings`.
    pub async fn create_room(
        &self,
        as_handle: &str,
        settings: &RoomSettings,
    ) -> (RoomId, MlsGroup) {
        let room = RoomId::random();
        let group = MlsGroup::new_with_group_id(
            &self.engine.provider,
            &self.engine.signer,
            &create_config(settings).unwrap(),
            GroupId::from_slice(&room.0),
            self.credential_as(as_handle),
        )
        .unwrap();
        let cap = self.engine.cap(&group).unwrap();
        let answer = self
            .call(Request::CreateRoom {
                room,
                cap_hash: cap.hash(),
                retention_secs: None,
                admin: hearth_core::pseudonym::RoomAdminKey::derive(&[0xad; 32], &room).public(),
            })
            .await;
        assert!(matches!(answer, Ok(Response::Done)), "{answer:?}");
        (room, group)
    }
}

impl Hostile {
    /// The transcript mark hearth would put on our next message in `room`.
    pub fn mark(&self, room: RoomId) -> hearth_core::content::TranscriptMark {
        let bytes = self
            .profile
            .store()
            .get(hearth_core::Table::Rooms, &room.0)
            .unwrap()
            .expect("a room record");
        let record = hearth_core::client::room::RoomRecord::decode(&bytes).unwrap();
        record.transcript.mark()
    }

    /// Appends an application message with `body` to `room`, as a member would.
    pub async fn send_body(
        &self,
        room: RoomId,
        group: &mut MlsGroup,
        body: hearth_core::content::Body,
    ) -> Result<Response, WireError> {
        let content = hearth_core::content::Content::v1(body, self.mark(room));
        let message = group
            .create_message(
                &self.engine.provider,
                &self.engine.signer,
                &content.encode(),
            )
            .unwrap();
        let cap = self.engine.cap(group).unwrap();
        self.call(Request::Append {
            room,
            cap,
            payload: message.to_bytes().unwrap(),
        })
        .await
    }
}

impl Hostile {
    /// An external commit joining public `room` under `as_handle` (with our own key),
    /// built from the GroupInfo the relay lists; returns the epoch it was built on, the
    /// commit bytes and the capability it leads to.
    pub async fn external_join(
        &self,
        room: RoomId,
        as_handle: &str,
    ) -> (u64, Vec<u8>, hearth_protocol::Cap) {
        let Ok(Response::GroupInfo { group_info, epoch }) =
            self.call(Request::FetchGroupInfo { room }).await
        else {
            panic!("the room is not listed");
        };
        let MlsMessageBodyIn::GroupInfo(info) = MlsMessageIn::tls_deserialize_exact(&group_info)
            .unwrap()
            .extract()
        else {
            panic!("the listing holds no GroupInfo");
        };
        let (group, bundle) = MlsGroup::external_commit_builder()
            .with_config(hearth_core::mls::join_config())
            .build_group(&self.engine.provider, info, self.credential_as(as_handle))
            .unwrap()
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(hearth_core::mls::config::capabilities())
                    .build(),
            )
            .load_psks(self.engine.provider.storage())
            .unwrap()
            .build(
                self.engine.provider.rand(),
                self.engine.provider.crypto(),
                &self.engine.signer,
                |_| true,
            )
            .unwrap()
            .finalize(&self.engine.provider)
            .unwrap();
        let cap = self.engine.cap(&group).unwrap();
        (epoch, bundle.into_commit().to_bytes().unwrap(), cap)
    }
}

impl Hostile {
    /// Stages a commit adding `package` whose Welcome carries a join point, as hearth's
    /// own invitations do (the start of the log: the group is new).
    pub fn add_with_join_point(
        &self,
        group: &mut MlsGroup,
        package: KeyPackage,
    ) -> (MlsMessageOut, MlsMessageOut) {
        let point = hearth_core::mls::join_point::JoinPoint {
            seq: 0,
            hash: [0; 32],
        };
        let bundle = group
            .commit_builder()
            .propose_adds([package])
            .load_psks(self.engine.provider.storage())
            .unwrap()
            .create_group_info_with_extensions([point.extension()])
            .unwrap()
            .build(
                self.engine.provider.rand(),
                self.engine.provider.crypto(),
                &self.engine.signer,
                |_| true,
            )
            .unwrap()
            .stage_commit(&self.engine.provider)
            .unwrap();
        let (commit, welcome, _) = bundle.into_messages();
        (commit, welcome.expect("a Welcome for the added member"))
    }
}
