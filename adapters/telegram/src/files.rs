//! Attachments: a Telegram document is fetched only when the core ingests it, with
//! `getFile` (which gives its size and path) and then the file download, streamed chunk by
//! chunk into the core's sink and capped in size.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use lore_chat::{Attachment, ChatError, ChunkSink, Download};
use teloxide::net::Download as _;
use teloxide::prelude::*;
use teloxide::types::{Document, FileId};

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
    async fn download(&self, max_bytes: u64, sink: &mut dyn ChunkSink) -> Result<u64, ChatError> {
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
        // Chunk by chunk into the core's sink, stopping as soon as the file grows past
        // `max_bytes`, whatever size `getFile` reported.
        let mut stream = std::pin::pin!(self.files.bot.download_file_stream(&file.path));
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                failure::download_error(&teloxide::DownloadError::from(e), redactor)
            })?;
            if written + chunk.len() as u64 > max_bytes {
                return Err(ChatError::other(format!(
                    "the file is larger than the limit of {max_bytes} bytes"
                )));
            }
            sink.write(&chunk).await?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }
}

/// The text of a replied message, ingested as a text file by `/ingest`.
pub struct TextFile(pub String);

#[async_trait]
impl Download for TextFile {
    async fn download(&self, max_bytes: u64, sink: &mut dyn ChunkSink) -> Result<u64, ChatError> {
        if self.0.len() as u64 > max_bytes {
            return Err(ChatError::other(format!(
                "the message is larger than the limit of {max_bytes} bytes"
            )));
        }
        sink.write(self.0.as_bytes()).await?;
        Ok(self.0.len() as u64)
    }
}
