//! `ingest`: add attached files, http(s) URLs, or quoted text to the tenant (admins only).

use super::{BotError, Ctx};
use crate::bot::{knowledge, permissions};
use crate::ingest::document::Document;
use crate::ingest::load;
use crate::ingest::pipeline::SourceOutcome;

/// Ingests everything the message carries; one failed item is reported, not fatal.
pub async fn run(ctx: &Ctx<'_>, args: &str) -> Result<String, BotError> {
    let core = ctx.core;
    let event = ctx.event;
    permissions::require_admin(&core.settings, event, "ingest knowledge")?;
    let (urls, text): (Vec<&str>, Vec<&str>) = args
        .split_whitespace()
        .partition(|w| w.starts_with("https://") || w.starts_with("http://"));
    let text = text.join(" ");
    let text = text.trim().trim_matches(['"', '“', '”']);
    if urls.is_empty() && text.is_empty() && event.attachments.is_empty() {
        return Err(BotError::Usage(
            "attach files, give http(s) URLs, or quote text: /ingest \"...\"".to_owned(),
        ));
    }
    let mut lines = Vec::new();
    let mut stored_any = false;
    let mut report = |name: &str, outcome: Result<SourceOutcome, BotError>| {
        let line = match outcome {
            Ok(SourceOutcome::Stored { chunks, .. }) => {
                stored_any = true;
                format!("✓ {name}: {chunks} chunks")
            }
            Ok(SourceOutcome::Unchanged) => format!("= {name}: unchanged"),
            Err(e) => format!("✗ {name}: {e}"),
        };
        lines.push(line);
    };
    for attachment in &event.attachments {
        let outcome = async {
            // The file's budget is held until it is stored, then returned.
            let mut reservation = core.uploads.reservation();
            let doc = knowledge::load_attachment(
                core,
                &mut reservation,
                attachment,
                attachment.name.clone(),
                core.max_file_bytes(),
            )
            .await?;
            knowledge::store_document(core, &event.tenant, doc).await
        }
        .await;
        report(&attachment.name, outcome);
    }
    let limits = core.load_limits();
    for url in urls {
        let outcome = async {
            let doc: Document = load::fetch_url(url, &limits)
                .await
                .map_err(|e| BotError::Ingest(e.to_string()))?;
            knowledge::store_document(core, &event.tenant, doc).await
        }
        .await;
        report(url, outcome);
    }
    if !text.is_empty() {
        let source = knowledge::post_source(event);
        let doc = knowledge::text_document(event, source.clone(), text).expect("text is not empty");
        report(
            &source,
            knowledge::store_document(core, &event.tenant, doc).await,
        );
    }
    if stored_any {
        core.kb.store.commit().await?;
    }
    Ok(lines.join("\n"))
}
