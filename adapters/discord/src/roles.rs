//! Who the author is as the core sees them: their role names and Discord's own admin
//! notion (Manage Server or Administrator). Guild roles are read through the API and kept
//! for a few minutes. Configured admin roles are the core's decision, not this adapter's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lore_chat::Author;
use serenity::all::{GuildId, Http, Permissions, RoleId, User};

use crate::translate;

/// How long a guild's roles are trusted before they are read again.
const ROLES_TTL: Duration = Duration::from_secs(300);

struct GuildRoles {
    read: Instant,
    /// Role id → (name, permissions); the @everyone role has the guild's id.
    roles: HashMap<RoleId, (String, Permissions)>,
}

/// Guild roles, cached per guild.
#[derive(Default)]
pub struct Roles(Mutex<HashMap<GuildId, Arc<GuildRoles>>>);

impl Roles {
    /// A guild's roles, read through the API at most every few minutes.
    async fn guild(&self, http: &Http, guild: GuildId) -> Option<Arc<GuildRoles>> {
        if let Some(cached) = self.0.lock().expect("not poisoned").get(&guild)
            && cached.read.elapsed() < ROLES_TTL
        {
            return Some(cached.clone());
        }
        match http.get_guild_roles(guild).await {
            Ok(list) => {
                let roles = Arc::new(GuildRoles {
                    read: Instant::now(),
                    roles: list
                        .into_iter()
                        .map(|r| (r.id, (r.name, r.permissions)))
                        .collect(),
                });
                self.0
                    .lock()
                    .expect("not poisoned")
                    .insert(guild, roles.clone());
                Some(roles)
            }
            Err(e) => {
                tracing::warn!(%guild, error = %e, "could not read the guild's roles; nobody counts as admin by role");
                None
            }
        }
    }

    /// The author with the names of their roles, and admin when they hold Manage Server
    /// (or Administrator). `member_permissions` (an interaction's) are authoritative.
    pub async fn author(
        &self,
        http: &Http,
        user: &User,
        nick: Option<&str>,
        guild: Option<GuildId>,
        member_roles: &[RoleId],
        member_permissions: Option<Permissions>,
    ) -> Author {
        let mut author = translate::author(user, nick);
        let Some(guild) = guild else {
            return author;
        };
        let known = self.guild(http, guild).await;
        let (roles, permissions) = resolve(
            known.as_ref().map(|k| &k.roles),
            guild,
            member_roles,
            member_permissions,
        );
        author.roles = roles;
        author.is_admin = permissions.manage_guild() || permissions.administrator();
        author
    }
}

/// The member's role names and permissions, from the guild's roles where they are known.
fn resolve(
    known: Option<&HashMap<RoleId, (String, Permissions)>>,
    guild: GuildId,
    member_roles: &[RoleId],
    member_permissions: Option<Permissions>,
) -> (Vec<String>, Permissions) {
    let mut names = Vec::new();
    let mut permissions = member_permissions.unwrap_or_else(Permissions::empty);
    let Some(known) = known else {
        return (names, permissions);
    };
    let everyone = RoleId::new(guild.get());
    for id in member_roles.iter().chain(std::iter::once(&everyone)) {
        if let Some((name, perms)) = known.get(id) {
            if *id != everyone {
                names.push(name.clone());
            }
            if member_permissions.is_none() {
                permissions |= *perms;
            }
        }
    }
    (names, permissions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_named_and_permissions_combined_unless_given() {
        let guild = GuildId::new(10);
        let known: HashMap<RoleId, (String, Permissions)> = [
            (
                RoleId::new(10),
                ("@everyone".into(), Permissions::SEND_MESSAGES),
            ),
            (RoleId::new(1), ("Mod".into(), Permissions::MANAGE_GUILD)),
            (RoleId::new(2), ("Librarian".into(), Permissions::empty())),
        ]
        .into();
        let (names, perms) = resolve(Some(&known), guild, &[RoleId::new(1)], None);
        assert_eq!(names, ["Mod"]);
        assert!(perms.manage_guild() && perms.send_messages());
        // An interaction's permissions win over the roles'.
        let (names, perms) = resolve(
            Some(&known),
            guild,
            &[RoleId::new(1), RoleId::new(2)],
            Some(Permissions::empty()),
        );
        assert_eq!(names, ["Mod", "Librarian"]);
        assert!(!perms.manage_guild());
        let (names, _) = resolve(None, guild, &[RoleId::new(1)], None);
        assert!(names.is_empty());
    }
}
