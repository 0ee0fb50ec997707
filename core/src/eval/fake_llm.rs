//! A chat model pointed at lore-testkit's scripted fake OpenAI server, for the judge and
//! answer tests.

use std::sync::Arc;

use lore_testkit::FakeOpenAi;

use crate::llm::{ChatModel, LlmSettings, Secrets, build_chat_model};

/// Serves `replies` in order (the last one repeats) and returns a chat model pointed at it.
pub async fn scripted_model(replies: &[&str]) -> Arc<dyn ChatModel> {
    let fake = FakeOpenAi::scripted(replies).await;
    let settings = LlmSettings {
        provider: "openai".parse().unwrap(),
        base_url: Some(fake.base_url()),
        model: "judge".into(),
        retry_budget_secs: 0,
        ..LlmSettings::default()
    };
    let secrets = Secrets::from_pairs(Vec::<(String, String)>::new());
    build_chat_model(&settings, &secrets).unwrap().unwrap()
}
