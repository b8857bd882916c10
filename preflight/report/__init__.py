"""Self-contained HTML reports (``preflight report``): a batch, or an account, over its
balance timeline. :mod:`preflight.report.chart` positions the chart (pure geometry);
:mod:`preflight.report.render` fills the Jinja2 templates in ``templates/``."""
