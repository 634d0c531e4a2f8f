import org.apache.lucene.analysis.standard.StandardAnalyzer;
import org.apache.lucene.document.Document;
import org.apache.lucene.document.Field;
import org.apache.lucene.document.TextField;
import org.apache.lucene.monitor.*;
import org.apache.lucene.queryparser.classic.QueryParser;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.*;
import java.util.*;

/**
 * Lucene Monitor side of the search benchmark: the same queries.tsv / docs.tsv as weir's
 * bench (bench/search), StandardAnalyzer, classic query parser (default operator AND,
 * leading wildcards), default field body; one document at a time on one thread.
 * Usage: MonitorBench DIR MAX_QUERIES [terms] [MAX_DOCS]
 */
public class MonitorBench {
  public static void main(String[] a) throws Exception {
    String dir = a[0];
    int maxq = Integer.parseInt(a[1]);
    boolean termsOnly = a.length > 2 && a[2].equals("terms");
    int maxDocs = a.length > 3 ? Integer.parseInt(a[3]) : Integer.MAX_VALUE;
    StandardAnalyzer an = new StandardAnalyzer();
    QueryParser qp = new QueryParser("body", an);
    qp.setDefaultOperator(QueryParser.Operator.AND);
    qp.setAllowLeadingWildcard(true);
    List<MonitorQuery> qs = new ArrayList<>();
    for (String line : Files.readAllLines(Paths.get(dir, "queries.tsv"))) {
      if (qs.size() >= maxq) break;
      String[] f = line.split("\t");
      if (termsOnly && !f[2].equals("1")) continue;
      qs.add(new MonitorQuery(f[0], qp.parse(f[1])));
    }
    List<String[]> docs = new ArrayList<>();
    for (String line : Files.readAllLines(Paths.get(dir, "docs.tsv"))) {
      if (docs.size() >= maxDocs) break;
      docs.add(line.split("\t", 3));
    }
    Runtime rt = Runtime.getRuntime();
    System.gc();
    long heap0 = rt.totalMemory() - rt.freeMemory();
    long t0 = System.nanoTime();
    Monitor m = new Monitor(an);
    for (int i = 0; i < qs.size(); i += 10000) m.register(qs.subList(i, Math.min(qs.size(), i + 10000)));
    double reg = (System.nanoTime() - t0) / 1e9;
    qs = null;
    System.gc();
    long heap1 = rt.totalMemory() - rt.freeMemory();
    // warm-up
    for (int i = 0; i < Math.min(100, docs.size()); i++) m.match(doc(docs.get(i)), QueryMatch.SIMPLE_MATCHER);
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    long c0 = mx.getCurrentThreadCpuTime();
    long t1 = System.nanoTime();
    long hits = 0;
    for (String[] d : docs) hits += m.match(doc(d), QueryMatch.SIMPLE_MATCHER).getMatchCount();
    double el = (System.nanoTime() - t1) / 1e9;
    double cpu = (mx.getCurrentThreadCpuTime() - c0) / 1e9;
    System.out.printf("lucene-monitor queries=%d docs=%d register_s=%.2f heap_bytes_per_query=%.0f docs_per_s=%.1f docs_per_cpu_s=%.1f hits=%d%n",
        m.getQueryCount(), docs.size(), reg, (heap1 - heap0) / (double) Math.max(1, m.getQueryCount()),
        docs.size() / el, docs.size() / cpu, hits);
    m.close();
  }

  static Document doc(String[] f) {
    Document d = new Document();
    d.add(new TextField("title", f[1], Field.Store.NO));
    d.add(new TextField("body", f[2], Field.Store.NO));
    return d;
  }
}
