//! Attachments: a Telegram document is fetched only when the core ingests it, with
//! `getFile` (which gives its size and path) and then the file download, capped in size.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use lore_chat::{Attachment, ChatError, Download};
use teloxide::net::Download as _;
use teloxide::prelude::*;
use teloxide::types::{Document, FileId};
use tokio::io::AsyncWrite;

use crate::failure;
use crate::redact::Redactor;

/// The largest file the Bot API lets a bot download.
pub const BOT_API_DOWNLOAD_LIMIT: u64 = 20 * 1024 * 1024;

/// Makes attachments out of documents, all downloading through one bot.
#[derive(Clone)]
pub struct TelegramFile {
    pub bot: Bot,
    pub redactor: Redactor,
}

impl TelegramFile {
    /// The attachment of a document, downloaded on demand.
    pub fn attachment(&self, doc: &Document) -> Attachment {
        Attachment {
            name: doc
                .file_name
                .clone()
                .unwrap_or_else(|| format!("{}.bin", doc.file.unique_id)),
            size: u64::from(doc.file.size),
            content_type: doc.mime_type.as_ref().map(|m| m.to_string()),
            handle: Arc::new(DocumentDownload {
                files: self.clone(),
                file_id: doc.file.id.clone(),
            }),
        }
    }
}

struct DocumentDownload {
    files: TelegramFile,
    file_id: FileId,
}

#[async_trait]
impl Download for DocumentDownload {
    async fn download(&self, max_bytes: u64) -> Result<Vec<u8>, ChatError> {
        let redactor = &self.files.redactor;
        let file = self
            .files
            .bot
            .get_file(self.file_id.clone())
            .await
            .map_err(|e| match e {
                teloxide::RequestError::Api(teloxide::ApiError::Unknown(ref d))
                    if d.contains("file is too big") =>
                {
                    ChatError::other(format!(
                        "Telegram lets bots download files up to {} MiB",
                        BOT_API_DOWNLOAD_LIMIT / (1024 * 1024)
                    ))
                }
                e => failure::chat_error(&e, redactor),
            })?;
        let size = u64::from(file.meta.size);
        if size > max_bytes {
            return Err(ChatError::other(format!(
                "the file has {size} bytes, over the limit of {max_bytes}"
            )));
        }
        let mut sink = Capped {
            bytes: Vec::with_capacity(size.min(max_bytes) as usize),
            max: max_bytes,
        };
        self.files
            .bot
            .download_file(&file.path, &mut sink)
            .await
            .map_err(|e| failure::download_error(&e, redactor))?;
        Ok(sink.bytes)
    }
}

/// Collects a download and fails as soon as it grows past `max` bytes, whatever size
/// `getFile` reported.
struct Capped {
    bytes: Vec<u8>,
    max: u64,
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if (self.bytes.len() + buf.len()) as u64 > self.max {
            return Poll::Ready(Err(io::Error::other(format!(
                "the file is larger than the limit of {} bytes",
                self.max
            ))));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The text of a replied message, ingested as a text file by `/ingest`.
pub struct TextFile(pub String);

#[async_trait]
impl Download for TextFile {
    async fn download(&self, max_bytes: u64) -> Result<Vec<u8>, ChatError> {
        if self.0.len() as u64 > max_bytes {
            return Err(ChatError::other(format!(
                "the message is larger than the limit of {max_bytes} bytes"
            )));
        }
        Ok(self.0.clone().into_bytes())
    }
}
