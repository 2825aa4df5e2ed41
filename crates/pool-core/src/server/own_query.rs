//! Queries pgtide runs on a server itself (re-applying settings, the session-mode reset), as
//! opposed to the client traffic it forwards.

use bytes::BytesMut;
use pgtide_protocol::frame::MAX_FRAME_LEN;
use pgtide_protocol::{backend, encode, BackendMessage, ErrorFields, TransactionStatus};
use tokio::io::AsyncWriteExt;

use super::ServerConn;
use crate::io::read_frame;

impl ServerConn {
    /// Runs `sql` as one simple query and reads the answer up to ReadyForQuery. ParameterStatus
    /// messages update [`ServerConn::params`] and are passed to `on_param`. Returns the first
    /// ErrorResponse, if any; `Err` when the connection broke or did not end idle with nothing
    /// more to read — then it must not be reused.
    pub async fn run_own_query(
        &mut self,
        sql: &str,
        mut on_param: impl FnMut(&str, &str),
    ) -> Result<Option<ErrorFields>, String> {
        let mut out = BytesMut::with_capacity(sql.len() + 8);
        encode::query(&mut out, sql);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;
        let mut inbuf = BytesMut::with_capacity(1024);
        let mut error = None;
        loop {
            let frame = read_frame(&mut self.stream, &mut inbuf, MAX_FRAME_LEN)
                .await
                .map_err(|e| e.to_string())?;
            match backend::decode(frame[0], &frame[5..]).map_err(|e| e.to_string())? {
                BackendMessage::ParameterStatus { name, value } => {
                    self.params.set(name, value);
                    on_param(name, value);
                }
                BackendMessage::ErrorResponse(fields) => {
                    error.get_or_insert(fields);
                }
                BackendMessage::ReadyForQuery(status) => {
                    return if status == TransactionStatus::Idle && inbuf.is_empty() {
                        Ok(error)
                    } else {
                        Err(format!("server in an unexpected state after {sql:?}"))
                    };
                }
                _ => {}
            }
        }
    }
}
