"""EMER-Coarse to EMER-Fine: quality filters, the review log and page, and the exports."""
