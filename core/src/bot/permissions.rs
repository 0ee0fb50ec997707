//! Who may change a tenant's knowledge: platform admins (Manage Server on Discord, chat
//! admins on Telegram, as the adapter reports), configured roles, and configured user ids.

use lore_chat::IncomingEvent;

use super::BotError;
use super::settings::BotSettings;

/// True when the author may ingest, forget and mark knowledge channels.
pub fn is_admin(settings: &BotSettings, event: &IncomingEvent) -> bool {
    let author = &event.author;
    let id = format!("{}:{}", event.platform, author.id);
    author.is_admin
        || settings.admin_user_ids.iter().any(|a| a == &id)
        || author
            .roles
            .iter()
            .any(|r| settings.admin_roles.iter().any(|a| a == r))
}

/// Refuses `action` with a clear reason unless the author is an admin.
pub fn require_admin(
    settings: &BotSettings,
    event: &IncomingEvent,
    action: &'static str,
) -> Result<(), BotError> {
    if is_admin(settings, event) {
        Ok(())
    } else {
        Err(BotError::NotAllowed(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, roles: &[&str], is_admin: bool) -> IncomingEvent {
        let mut e = IncomingEvent {
            platform: "discord".into(),
            ..Default::default()
        };
        e.author.id = id.into();
        e.author.roles = roles.iter().map(|r| r.to_string()).collect();
        e.author.is_admin = is_admin;
        e
    }

    #[test]
    fn admins_come_from_the_platform_roles_or_user_ids() {
        let mut s: BotSettings = crate::test_defaults::section("bot");
        s.admin_roles = vec!["Librarian".into()];
        s.admin_user_ids = vec!["discord:42".into()];
        assert!(is_admin(&s, &event("1", &[], true)));
        assert!(is_admin(&s, &event("1", &["Librarian"], false)));
        assert!(is_admin(&s, &event("42", &[], false)));
        assert!(!is_admin(&s, &event("43", &["Member"], false)));
        // An id is per platform: telegram:42 is someone else.
        let mut tg = event("42", &[], false);
        tg.platform = "telegram".into();
        assert!(!is_admin(&s, &tg));
        let refusal = require_admin(&s, &event("43", &[], false), "ingest").unwrap_err();
        assert!(refusal.to_string().contains("admin"), "{refusal}");
    }
}
