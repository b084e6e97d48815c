"""Where a secret can go and where it is used: destination pickers, consumer discovery, and the
sign-in evidence that lets a superseded credential be retired early.

Everything here only reads, with the rotator's own identity (and a group's Vercel token), and never
returns a secret value: a picker lists names and ids, discovery compares digests.

=====================  ====================================  ==========================================
module                 what                                  needs (least privilege, per feature)
=====================  ====================================  ==========================================
``pickers``            subscriptions, Key Vaults, API        Reader on the subscriptions or resource
                       connections, App Service / Function   groups to list; DevOps: a project reader;
                       Apps, Automation accounts, runbooks,  Vercel: the group's token
                       DevOps projects and service
                       connections, Vercel projects
``consumers``          who holds or points at an             the pickers' rights, plus Website
                       application's secret                  Contributor (app settings are read with
                                                             ``config/list``) and Key Vault Reader
                                                             to list tagged secrets (no values)
``signins``            when each credential was last used    Graph ``AuditLog.Read.All``
=====================  ====================================  ==========================================
"""
