/**
 * The REST routes of jupyter_comm_ext, through `ServerConnection` so the token, the XSRF
 * cookie and the server's base URL are handled the way every JupyterLab request does.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { Kernel, ServerConnection, Session } from '@jupyterlab/services';

/** Messages or bytes, each way (the comm model's `messages` and `bytes`). */
export interface IEachWay {
  to_kernel: number;
  from_kernel: number;
}

/** A comm as `GET /api/comms` describes it (message data is never in it). */
export interface IComm {
  comm_id: string;
  kernel_id: string;
  target_name: string | null;
  target_module: string | null;
  origin: 'kernel' | 'frontend' | 'unknown';
  session_id: string | null;
  opened_at: string;
  last_activity: string;
  messages: IEachWay;
  bytes: IEachWay;
  status: 'open' | 'closed' | 'orphaned';
  closed_at: string | null;
  close_reason: string | null;
  /** The widget model this comm is; null for other comms and ones open before the server watched. */
  widget: IWidget | null;
}

/** What the server knows of a widget model: its class and the models it references. */
export interface IWidget {
  model_name: string;
  model_module: string | null;
  model_module_version: string | null;
  /** The models in its state, with the top-level key each sits under (`layout`, `children`). */
  references: { key: string; comm_id: string }[];
  /** The open widgets that reference it. */
  referenced_by: string[];
  /** The last open widget that referenced it closed: nothing uses it any more. */
  left_behind: boolean;
}

/** When a kernel's comms last moved, by side (ISO times, null for never). */
export interface ICommActivity {
  /** A frontend last sent a comm message: a user touched a widget. */
  user: string | null;
  /** The kernel last sent one on its own (a timer, a thread), not in answer to a user. */
  kernel: string | null;
}

/** One kernel's live comms in `GET /api/comms/summary`. */
export interface IKernelSummary {
  open: number;
  orphaned: number;
  /** Open widget models left behind (counted in `open` too). */
  left_behind: number;
  messages: IEachWay;
  bytes: IEachWay;
  comm_activity?: ICommActivity;
}

/** `GET /api/comms/summary`: counts over live (open and orphaned) comms. */
export interface ISummary extends IKernelSummary {
  closed: number;
  by_kernel: { [kernelId: string]: IKernelSummary };
  by_target: {
    [target: string]: { open: number; orphaned: number; left_behind: number };
  };
  by_origin: { [origin: string]: number };
}

/** A page of comms: at most `limit` of them, and whether the server has more. */
export interface IPage {
  comms: IComm[];
  more: boolean;
}

/** A failed request, with the server's `message` when it sent one. */
/**
 * jupyter_server counts requests to its own routes as the user's activity, which would keep
 * an abandoned server from being culled while the panel polls; ours never count.
 */
const NOT_ACTIVITY = { no_track_activity: '1' };

export class CommsError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }

  /** The server answered 404 on a route every enabled jupyter_comm_ext has. */
  get notEnabled(): boolean {
    return this.status === 404;
  }
}

/** The HTTP client of the panel, the status bar item and the commands. */
export class CommsAPI {
  constructor(
    readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  /** `GET /api/comms/summary`; a 404 means the server extension is not enabled. */
  async summary(): Promise<ISummary> {
    return (await this.request('api/comms/summary')).json();
  }

  /**
   * The first `limit` comms of one kernel in the server's stable order (opened_at, comm_id).
   * The panel asks for the first N again on each refresh rather than following cursors, so
   * a page never shows a comm twice or skips one that opened in between; the `Link: ...;
   * rel="next"` header only tells it that there are more.
   */
  async page(
    kernelId: string,
    status: 'open' | 'orphaned',
    limit: number
  ): Promise<IPage> {
    const response = await this.request('api/comms', {
      kernel_id: kernelId,
      status,
      limit: String(limit)
    });
    const link = response.headers.get('Link') ?? '';
    return {
      comms: await response.json(),
      more: /;\s*rel="?next"?/.test(link)
    };
  }

  /**
   * Force-close one comm (`DELETE /api/comms/{id}`); with `cascade`, also the widget models
   * only it references, transitively. The comms closed, this one first.
   */
  async close(commId: string, cascade = false): Promise<IComm[]> {
    const response = await this.request(
      `api/comms/${encodeURIComponent(commId)}`,
      cascade ? { cascade: '1' } : {},
      { method: 'DELETE' }
    );
    return response.status === 204 ? [] : response.json();
  }

  /** Force-close every open comm matching the filters; the server refuses no filter at all. */
  async closeWhere(filters: Record<string, string>): Promise<IComm[]> {
    return (
      await this.request('api/comms', filters, { method: 'DELETE' })
    ).json();
  }

  /** The server's sessions: which notebook or console each kernel belongs to. */
  async sessions(): Promise<Session.IModel[]> {
    return (await this.request('api/sessions', NOT_ACTIVITY)).json();
  }

  /** The server's kernels (their names, and the ones no session holds). */
  async kernels(): Promise<Kernel.IModel[]> {
    return (await this.request('api/kernels', NOT_ACTIVITY)).json();
  }

  /**
   * Whether this user may close comms (`write` on `comms`), from jupyter_server's
   * `/api/me`, which asks the same Authorizer the DELETE routes do.
   */
  async canClose(): Promise<boolean> {
    const response = await this.request('api/me', {
      permissions: JSON.stringify({ comms: ['write'] })
    });
    const me = await response.json();
    return (me.permissions?.comms ?? []).includes('write');
  }

  private async request(
    path: string,
    query: Record<string, string> = {},
    init: RequestInit = {}
  ): Promise<Response> {
    const search = new URLSearchParams(query).toString();
    const url =
      URLExt.join(this.settings.baseUrl, path) + (search ? `?${search}` : '');
    let response: Response;
    try {
      // `no-cache` (revalidate every time) rather than JupyterLab's default `no-store`,
      // which appends a bare `?<timestamp>` the routes reject as an unknown argument.
      response = await ServerConnection.makeRequest(
        url,
        { cache: 'no-cache', ...init },
        this.settings
      );
    } catch (error) {
      throw new CommsError(
        0,
        `The server could not be reached: ${String(error)}`
      );
    }
    if (!response.ok) {
      let message = response.statusText;
      try {
        message = (await response.json()).message || message;
      } catch {
        // not JSON (a proxy's error page): the status line says enough
      }
      throw new CommsError(response.status, `${response.status}: ${message}`);
    }
    return response;
  }
}
