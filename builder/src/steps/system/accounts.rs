//! `[[system.user]]`: `/etc/passwd`, `/etc/group`, `/etc/shadow` and `/etc/gshadow`
//! rewritten with every existing line kept, deterministically (no `useradd`: ids are the
//! first free ones from 1000, the last password change is the build's day).

use crate::recipe::UserSpec;

/// The first id new users and groups get.
const FIRST_ID: u32 = 1000;
/// Ids at or above this are not handed out (65534 is `nobody`).
const LAST_ID: u32 = 60000;

/// One of the four account files as lines of `:`-separated fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Table {
    lines: Vec<Vec<String>>,
}

impl Table {
    /// Parses a file's text (lines that are not `name:...` records are kept as they are).
    pub(crate) fn parse(text: &str) -> Self {
        Self {
            lines: text
                .lines()
                .map(|l| l.split(':').map(str::to_owned).collect())
                .collect(),
        }
    }

    /// The file's text.
    pub(crate) fn render(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.join(":") + "\n")
            .collect::<String>()
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.lines.iter().position(|l| l.len() > 1 && l[0] == name)
    }

    fn field(&self, name: &str, at: usize) -> Option<&str> {
        self.find(name)
            .and_then(|i| self.lines[i].get(at))
            .map(String::as_str)
    }

    fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.lines
            .iter()
            .filter_map(|l| l.get(2).and_then(|id| id.parse().ok()))
    }

    fn name_of_id(&self, id: u32) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.len() > 2 && l[2].parse() == Ok(id))
            .map(|l| l[0].as_str())
    }

    fn set(&mut self, name: &str, at: usize, value: &str) {
        if let Some(i) = self.find(name) {
            let line = &mut self.lines[i];
            if line.len() <= at {
                line.resize(at + 1, String::new());
            }
            line[at] = value.to_owned();
        }
    }

    fn push(&mut self, fields: &[&str]) {
        self.lines
            .push(fields.iter().map(|f| (*f).to_owned()).collect());
    }

    /// Adds `user` to the comma-separated member list in field `at` of group `name`.
    fn add_member(&mut self, name: &str, at: usize, user: &str) {
        let Some(i) = self.find(name) else { return };
        let line = &mut self.lines[i];
        if line.len() <= at {
            line.resize(at + 1, String::new());
        }
        let mut members: Vec<&str> = line[at].split(',').filter(|m| !m.is_empty()).collect();
        if !members.contains(&user) {
            members.push(user);
        }
        line[at] = members.join(",");
    }
}

/// The four files, as read from the image (`None` when it has no such file).
#[derive(Debug, Clone, Default)]
pub(crate) struct Accounts {
    pub(crate) passwd: Table,
    pub(crate) group: Table,
    pub(crate) shadow: Table,
    pub(crate) gshadow: Table,
}

/// What a user ended up as, for its home and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// Login name.
    pub(crate) name: String,
    /// Its uid.
    pub(crate) uid: u32,
    /// Its primary gid.
    pub(crate) gid: u32,
    /// Its home directory (absolute).
    pub(crate) home: String,
    /// Whether it was created by this step (its home is then created too).
    pub(crate) new: bool,
}

/// A user that cannot be applied: the key (below `system.user[N]`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountError {
    /// `uid`, `groups` ...
    pub(crate) key: &'static str,
    /// What is wrong and what to do.
    pub(crate) message: String,
}

impl Accounts {
    fn free_id(&self, table: &Table, also: Option<&Table>) -> Option<u32> {
        let used: std::collections::BTreeSet<u32> = table
            .ids()
            .chain(also.into_iter().flat_map(Table::ids))
            .collect();
        (FIRST_ID..LAST_ID).find(|id| !used.contains(id))
    }

    /// Adds or updates one user; `default_shell` is used for a new user without `shell`;
    /// `day` is the last password change (days since 1970).
    pub(crate) fn apply(
        &mut self,
        user: &UserSpec,
        default_shell: &str,
        day: u64,
    ) -> Result<Placed, AccountError> {
        let name = user.name.as_str();
        let existing = self
            .passwd
            .field(name, 2)
            .and_then(|u| u.parse::<u32>().ok());
        let placed = match existing {
            Some(uid) => {
                if let Some(wanted) = user.uid.filter(|w| *w != uid) {
                    return Err(AccountError {
                        key: "uid",
                        message: format!("user `{name}` already exists in the image with uid {uid}, not {wanted}"),
                    });
                }
                if let Some(shell) = &user.shell {
                    self.passwd.set(name, 6, shell);
                }
                if let Some(home) = &user.home {
                    self.passwd.set(name, 5, home);
                }
                if let Some(hash) = &user.password_hash {
                    if self.shadow.find(name).is_none() {
                        self.shadow
                            .push(&[name, hash, "", "0", "99999", "7", "", "", ""]);
                    }
                    self.shadow.set(name, 1, hash);
                    self.shadow.set(name, 2, &day.to_string());
                }
                let gid = self
                    .passwd
                    .field(name, 3)
                    .and_then(|g| g.parse().ok())
                    .unwrap_or(uid);
                let home = self.passwd.field(name, 5).unwrap_or_default().to_owned();
                Placed {
                    name: name.to_owned(),
                    uid,
                    gid,
                    home,
                    new: false,
                }
            }
            None => {
                let uid = match user.uid {
                    Some(uid) => {
                        if let Some(other) = self.passwd.name_of_id(uid) {
                            return Err(AccountError {
                                key: "uid",
                                message: format!(
                                    "uid {uid} already belongs to user `{other}` in the image"
                                ),
                            });
                        }
                        uid
                    }
                    None => self
                        .free_id(&self.passwd, None)
                        .ok_or_else(|| AccountError {
                            key: "uid",
                            message: format!("no free uid from {FIRST_ID} to {LAST_ID}"),
                        })?,
                };
                let gid = match self.group.field(name, 2).and_then(|g| g.parse().ok()) {
                    Some(gid) => gid,
                    None => {
                        let gid = if self.group.name_of_id(uid).is_none() {
                            uid
                        } else {
                            self.free_id(&self.group, None)
                                .ok_or_else(|| AccountError {
                                    key: "name",
                                    message: format!(
                                        "no free gid from {FIRST_ID} for the group of `{name}`"
                                    ),
                                })?
                        };
                        self.add_group(name, gid, None);
                        gid
                    }
                };
                let home = user.home.clone().unwrap_or_else(|| format!("/home/{name}"));
                let shell = user.shell.as_deref().unwrap_or(default_shell);
                let (uid_s, gid_s) = (uid.to_string(), gid.to_string());
                self.passwd
                    .push(&[name, "x", &uid_s, &gid_s, "", &home, shell]);
                let hash = user.password_hash.as_deref().unwrap_or("!");
                self.shadow.find(name).is_none().then(|| {
                    self.shadow.push(&[
                        name,
                        hash,
                        &day.to_string(),
                        "0",
                        "99999",
                        "7",
                        "",
                        "",
                        "",
                    ]);
                });
                Placed {
                    name: name.to_owned(),
                    uid,
                    gid,
                    home,
                    new: true,
                }
            }
        };
        for group in &user.groups {
            if self.group.find(group).is_none() {
                if !user.create_groups {
                    return Err(AccountError {
                        key: "groups",
                        message: format!("group `{group}` does not exist in the image; install the package that adds it (e.g. `sudo` for group sudo), or set create_groups = true"),
                    });
                }
                let gid = self
                    .free_id(&self.group, None)
                    .ok_or_else(|| AccountError {
                        key: "groups",
                        message: format!("no free gid from {FIRST_ID} for group `{group}`"),
                    })?;
                self.add_group(group, gid, None);
            }
            self.group.add_member(group, 3, name);
            if self.gshadow.find(group).is_some() {
                self.gshadow.add_member(group, 3, name);
            }
        }
        Ok(placed)
    }

    fn add_group(&mut self, name: &str, gid: u32, member: Option<&str>) {
        let gid = gid.to_string();
        let member = member.unwrap_or_default();
        self.group.push(&[name, "x", &gid, member]);
        if self.gshadow.find(name).is_none() {
            self.gshadow.push(&[name, "!", "", member]);
        }
    }

    /// The gid of a group, if the image has it.
    pub(crate) fn gid_of(&self, group: &str) -> Option<u32> {
        self.group.field(group, 2).and_then(|g| g.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserSpec {
        UserSpec {
            name: name.into(),
            uid: None,
            groups: vec![],
            create_groups: false,
            shell: None,
            home: None,
            ssh_authorized_keys: vec![],
            ssh_authorized_keys_file: None,
            password_hash: None,
            sudo: None,
        }
    }

    fn accounts() -> Accounts {
        Accounts {
            passwd: Table::parse(
                "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\n",
            ),
            group: Table::parse("root:x:0:\nsudo:x:27:\nbob:x:1000:\nusers:x:1001:\n"),
            shadow: Table::parse("root:*:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\n"),
            gshadow: Table::parse("root:*::\nsudo:*::\nbob:!::\nusers:*::\n"),
        }
    }

    #[test]
    fn new_user_gets_free_ids_and_keeps_lines() {
        let mut a = accounts();
        let mut alice = user("alice");
        alice.groups = vec!["sudo".into()];
        let placed = a.apply(&alice, "/bin/bash", 20000).unwrap();
        // uid 1000 is bob's; gid 1001 is taken, so the user group takes the next free one.
        assert_eq!((placed.uid, placed.gid, placed.new), (1001, 1002, true));
        assert_eq!(
            a.passwd.render(),
            "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\nalice:x:1001:1002::/home/alice:/bin/bash\n"
        );
        assert_eq!(
            a.group.render(),
            "root:x:0:\nsudo:x:27:alice\nbob:x:1000:\nusers:x:1001:\nalice:x:1002:\n"
        );
        assert_eq!(
            a.shadow.render(),
            "root:*:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\nalice:!:20000:0:99999:7:::\n"
        );
        assert_eq!(
            a.gshadow.render(),
            "root:*::\nsudo:*::alice\nbob:!::\nusers:*::\nalice:!::\n"
        );
    }

    #[test]
    fn uid_equal_gid_when_free_and_hash_kept() {
        let mut a = accounts();
        let mut carol = user("carol");
        carol.uid = Some(2000);
        carol.password_hash = Some("$6$s$h".into());
        carol.shell = Some("/bin/zsh".into());
        let placed = a.apply(&carol, "/bin/bash", 1).unwrap();
        assert_eq!((placed.uid, placed.gid), (2000, 2000));
        assert!(a
            .passwd
            .render()
            .ends_with("carol:x:2000:2000::/home/carol:/bin/zsh\n"));
        assert!(a.shadow.render().ends_with("carol:$6$s$h:1:0:99999:7:::\n"));
    }

    #[test]
    fn existing_user_updated_or_refused() {
        let mut a = accounts();
        let mut bob = user("bob");
        bob.uid = Some(1000);
        bob.groups = vec!["users".into()];
        let placed = a.apply(&bob, "/bin/bash", 1).unwrap();
        assert!(!placed.new);
        assert_eq!(a.passwd.find("bob"), Some(1));
        assert_eq!(a.passwd.lines.len(), 2);
        assert!(a.group.render().contains("users:x:1001:bob\n"));
        bob.uid = Some(1005);
        let e = a.apply(&bob, "/bin/bash", 1).unwrap_err();
        assert_eq!(e.key, "uid");
        assert!(e.message.contains("uid 1000"), "{}", e.message);
        let mut dave = user("dave");
        dave.uid = Some(1000);
        assert!(a
            .apply(&dave, "/bin/sh", 1)
            .unwrap_err()
            .message
            .contains("`bob`"));
    }

    #[test]
    fn missing_group_is_an_error_unless_created() {
        let mut a = accounts();
        let mut erin = user("erin");
        erin.groups = vec!["docker".into()];
        let e = a.apply(&erin, "/bin/sh", 1).unwrap_err();
        assert_eq!(e.key, "groups");
        assert!(e.message.contains("create_groups"));
        let mut a = accounts();
        erin.create_groups = true;
        a.apply(&erin, "/bin/sh", 1).unwrap();
        // erin takes uid 1001, her group 1002 (1001 is `users`), docker the next free gid.
        assert!(
            a.group
                .render()
                .ends_with("erin:x:1002:\ndocker:x:1003:erin\n"),
            "{}",
            a.group.render()
        );
        assert!(a.gshadow.render().ends_with("docker:!::erin\n"));
    }
}
