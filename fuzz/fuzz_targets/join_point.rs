//! The transcript marks other members write: the join point in a GroupInfo extension
//! (a Welcome's, or a public room's published GroupInfo: `JoinPoint::from_extension`) and
//! the mark in a commit's authenticated data (`transcript::decode_mark`). The first byte
//! picks the decoder: the extension's bytes alone, the commit mark, or a whole MLS message
//! read as a public room's GroupInfo is read when joining (parse, GroupInfo, extension).
#![no_main]

use hearth_core::mls::join_point::{JoinPoint, JOIN_POINT_EXTENSION};
use hearth_core::mls::parse_message;
use hearth_core::transcript::{decode_mark, encode_mark};
use libfuzzer_sys::fuzz_target;
use openmls::prelude::{MlsMessageBodyIn, UnknownExtension};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Some(point) = JoinPoint::from_extension(Some(&UnknownExtension(rest.to_vec()))) {
                let openmls::prelude::Extension::Unknown(kind, bytes) = point.extension() else {
                    panic!("a join point is an unknown extension");
                };
                assert_eq!(kind, JOIN_POINT_EXTENSION);
                assert_eq!(JoinPoint::from_extension(Some(&bytes)), Some(point));
            }
        }
        1 => {
            if let Some(mark) = decode_mark(rest) {
                assert_eq!(decode_mark(&encode_mark(mark)), Some(mark));
            }
        }
        _ => {
            let Ok(message) = parse_message(rest) else {
                return;
            };
            if let MlsMessageBodyIn::GroupInfo(info) = message.extract() {
                let _ = JoinPoint::from_extension(info.extensions().unknown(JOIN_POINT_EXTENSION));
            }
        }
    }
});
