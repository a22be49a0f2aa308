"""Analytics: statistical sections, charts, workbooks, clusters of repeated problems."""
