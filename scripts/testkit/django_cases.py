#!/usr/bin/env python3
"""Pagination cases computed by the real Django, for comparing SwiftESB's paginators.

Prints a JSON array: one object per (n_items, per_page, orphans, allow_empty_first_page)
with num_pages, count, and for each page-number input (ints and strings such as " 2 ",
"+2", "1_0", "1.0", "x") what validate_number, page and get_page give, and the elided
page range around each valid page."""
import json, warnings
from django.conf import settings

settings.configure(USE_I18N=False)
from django.core.paginator import Paginator, EmptyPage, PageNotAnInteger  # noqa: E402

warnings.simplefilter("ignore")
STRINGS = [" 2 ", "+2", "-0", "0", "1_0", "1__0", "_1", "1_", "1.0", "2.5", "x", "", " ", "٣", "１", "00", "+-1", "9" * 30, "-" + "9" * 30]

def outcome(call):
    try:
        return call()
    except PageNotAnInteger as error:
        return {"error": "PageNotAnInteger", "message": str(error)}
    except EmptyPage as error:
        return {"error": "EmptyPage", "message": str(error)}

def page_facts(page):
    return {"number": page.number, "object_list": list(page.object_list), "start_index": page.start_index(),
            "end_index": page.end_index(), "has_next": page.has_next(), "has_previous": page.has_previous()}

cases = []
for n in [0, 1, 2, 5, 9, 10, 11, 24, 25, 26, 99]:
    for per_page in [1, 2, 5, 10, 25]:
        for orphans in [0, 1, 2, 5]:
            for allow in [True, False]:
                paginator = Paginator(list(range(1, n + 1)), per_page, orphans=orphans, allow_empty_first_page=allow)
                inputs = list(range(-1, paginator.num_pages + 3)) + STRINGS
                case = {"n_items": n, "per_page": per_page, "orphans": orphans, "allow_empty_first_page": allow,
                        "count": paginator.count, "num_pages": paginator.num_pages, "inputs": []}
                for value in inputs:
                    case["inputs"].append({
                        "input": value,
                        "validate_number": outcome(lambda: paginator.validate_number(value)),
                        "page": outcome(lambda: page_facts(paginator.page(value))),
                        "get_page": outcome(lambda: page_facts(paginator.get_page(value))),
                        "elided": outcome(lambda: [str(item) for item in paginator.get_elided_page_range(value, on_each_side=1, on_ends=1)]),
                    })
                cases.append(case)
print(json.dumps(cases))
